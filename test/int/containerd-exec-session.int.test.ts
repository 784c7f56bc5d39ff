import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { hasStatus, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ContainerdExec } from '../../src/adapters/containerd/containerd-exec.js';
import type { ExecSession } from '../../src/adapters/containerd/containerd-exec-session.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import { ContainerdTasks } from '../../src/adapters/containerd/containerd-tasks.js';
import { ContainerNotRunningError } from '../../src/adapters/containerd/exec-process.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';
import { createTestContainer, DEVPTS_MOUNT, tearDownRuncTests } from '../support/runc-containers.js';
import { collect, openFdsUnder, seen } from '../support/streams.js';
import { until } from '../support/until.js';

const NAMESPACE = 'cri-ledger-exec-session-test';
const TEST_TIMEOUT_MS = 60_000;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let workDir: string;
let fifoDir: string;
let exec: ContainerdExec;
let running: string;
let runningPid: number;
const created: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-exec-session-'));
  fifoDir = join(workDir, 'state', 'exec');
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  tasks = new ContainerdTasks({ api, runcRoot: join(dirname(containerd.address), 'runc') });
  exec = new ContainerdExec({ api, fifoDir });
  running = `exec-session-${process.pid}-running`;
  created.push(running);
  await createTestContainer(api, runtime, running, ['sleep', '1000'], {
    process: { env: [...(BUSYBOX_IMAGE.env ?? []), 'TERM=dumb'] },
    mounts: [DEVPTS_MOUNT],
  });
  runningPid = (await tasks.start(running, { terminal: false })).pid;
});

after(async () => {
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

async function pids(): Promise<number[]> {
  const { processes } = await unaryCall<{ processes: Array<{ pid: number }> }>(api.tasks, 'ListPids', {
    container_id: running,
  });
  return processes.map((p) => p.pid).sort((a, b) => a - b);
}

const openFifoFds = (): string[] => openFdsUnder(fifoDir);

/** Only the container's init runs, the shim forgot the exec, and no FIFO or fd of ours is left. */
async function assertNothingLeft(session: ExecSession): Promise<void> {
  assert.deepEqual(await pids(), [runningPid], 'only the container init may be left');
  await assert.rejects(
    unaryCall(api.tasks, 'Get', { container_id: running, exec_id: session.execId }),
    (error: unknown) => hasStatus(error, Status.NOT_FOUND),
  );
  assert.deepEqual(existsSync(fifoDir) ? readdirSync(fifoDir) : [], []);
  assert.deepEqual(openFifoFds(), []);
}

describe('ContainerdExec.startExecSession', { timeout: TEST_TIMEOUT_MS }, () => {
  it('streams stdout and stderr apart and reports a non-zero exit code', async () => {
    const session = await exec.startExecSession(running, {
      cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    assert.equal(session.stdin, undefined);
    const [out, err, exit] = await Promise.all([collect(session.stdout), collect(session.stderr), session.wait()]);
    assert.deepEqual({ out, err, exit }, { out: 'out\n', err: 'err\n', exit: { exitCode: 3 } });
    await session.cleanup();
    await assertNothingLeft(session);
  });

  it('ends a session whose process exits at once without output', async () => {
    for (let i = 0; i < 10; i++) {
      const session = await exec.startExecSession(running, {
        cmd: ['true'],
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
      });
      const [out, err, exit] = await Promise.all([collect(session.stdout), collect(session.stderr), session.wait()]);
      assert.deepEqual({ out, err, exit }, { out: '', err: '', exit: { exitCode: 0 } });
      await session.cleanup();
      await assertNothingLeft(session);
    }
  });

  it('forwards stdin and gives the process end-of-file when stdin ends', async () => {
    const session = await exec.startExecSession(running, {
      cmd: ['sh', '-c', 'while read line; do echo "got $line"; done; echo eof'],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    assert.equal(session.stderr, undefined);
    const out = collect(session.stdout);
    session.stdin?.write('one\n');
    session.stdin?.write('two\n');
    // Ending the Writable is closing stdin (what a piped client stream does when it ends).
    session.stdin?.end('three\n');
    assert.deepEqual(await session.wait(), { exitCode: 0 });
    assert.equal(await out, 'got one\ngot two\ngot three\neof\n');
    await session.closeStdin(); // idempotent, also after the exit
    await session.cleanup();
    await assertNothingLeft(session);
  });

  it('closeStdin() delivers what was written before it, then end-of-file', async () => {
    const session = await exec.startExecSession(running, {
      cmd: ['wc', '-c'],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    const out = collect(session.stdout);
    session.stdin?.write(Buffer.alloc(300_000, 'x'));
    await session.closeStdin();
    assert.deepEqual(await session.wait(), { exitCode: 0 });
    assert.equal((await out).trim(), '300000');
    await session.cleanup();
    await assertNothingLeft(session);
  });

  it('runs with a pty: TERM=xterm, resize reaches `stty size`, one output stream', async () => {
    const session = await exec.startExecSession(running, {
      cmd: ['sh', '-c', 'echo "term=$TERM"; read go; stty size; read go; stty size; exit 4'],
      tty: true,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    assert.equal(session.stderr, undefined);
    const out = collect(session.stdout);
    await session.resize(123, 45);
    session.stdin?.write('go\n');
    await seen(session.stdout, /45 123/);
    await session.resize(80, 24);
    session.stdin?.write('go\n');
    assert.deepEqual(await session.wait(), { exitCode: 4 });
    const text = await out;
    assert.match(text, /term=xterm\r\n/);
    assert.match(text, /45 123\r\n[\s\S]*24 80\r\n/);
    await session.cleanup();
    await assertNothingLeft(session);
  });

  it('kill() signals the process; the exit code says which signal', async () => {
    const session = await exec.startExecSession(running, {
      cmd: ['sleep', '1000'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    const out = collect(session.stdout);
    await session.kill('SIGTERM');
    assert.deepEqual(await session.wait(), { exitCode: 143 });
    assert.equal(await out, '');
    await session.cleanup();
    await assertNothingLeft(session);
  });

  it('cleanup() of a session whose client went away kills its process, with or without a tty', async () => {
    for (const tty of [false, true]) {
      const session = await exec.startExecSession(running, {
        cmd: ['sh', '-c', 'echo ready; exec sleep 1000'],
        tty,
        stdin: true,
        stdout: true,
        stderr: !tty,
      });
      await seen(session.stdout, /ready/);
      assert.equal((await pids()).length, 2, 'the exec runs beside init');
      session.stdin?.write('typed but never read\n');
      await session.cleanup();
      await session.cleanup(); // idempotent
      await assertNothingLeft(session);
    }
  });

  it('an aborted signal cleans the session up', async () => {
    const abort = new AbortController();
    const session = await exec.startExecSession(running, {
      cmd: ['sleep', '1000'],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
      signal: abort.signal,
    });
    const exited = session.wait();
    abort.abort();
    assert.deepEqual(await exited, { exitCode: 137 });
    await until('the exec is deleted', async () => (await pids()).length === 1 && readdirSync(fifoDir).length === 0);
    await assertNothingLeft(session);
  });

  it('fails before creating anything for bad input, a missing binary or a stopped container', async () => {
    const base = { tty: false, stdin: false, stdout: true, stderr: true };
    await assert.rejects(exec.startExecSession(running, { ...base, cmd: [] }), InvalidArgumentError);
    await assert.rejects(exec.startExecSession(running, { ...base, cmd: ['sh'], tty: true }), InvalidArgumentError);
    await assert.rejects(
      exec.startExecSession(running, { ...base, cmd: ['/no/such/binary'] }),
      /no such file|not found/i,
    );
    const idle = `exec-session-${process.pid}-idle`;
    created.push(idle);
    await createTestContainer(api, runtime, idle, ['sleep', '1000']);
    await assert.rejects(exec.startExecSession(idle, { ...base, cmd: ['true'] }), ContainerNotRunningError);
    assert.deepEqual(await pids(), [runningPid]);
    assert.deepEqual(readdirSync(fifoDir), []);
    assert.deepEqual(openFifoFds(), []);
  });
});
