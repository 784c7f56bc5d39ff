import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { ContainerdCallError, hasStatus, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import {
  ContainerdExec,
  ContainerNotRunningError,
  ExecTimeoutError,
  type ExecSyncResult,
} from '../../src/adapters/containerd/containerd-exec.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import { ContainerdTasks } from '../../src/adapters/containerd/containerd-tasks.js';
import { NotFoundError, RuntimeUnavailableError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { createTestContainer, tearDownRuncTests, SYSFS_MOUNT } from '../support/runc-containers.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';
import { openFdsUnder } from '../support/streams.js';
import { until } from '../support/until.js';

const NAMESPACE = 'cri-ledger-exec-test';
const MIB = 1024 * 1024;
// Bounds a hang (a reader that never sees EOF, a process blocked on a full pipe), not speed.
const TEST_TIMEOUT_MS = 60_000;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let workDir: string;
let fifoDir: string;
let exec: ContainerdExec;
/** A running container: `sleep 1000` as init, env FOO, cwd /etc, uid/gid 1000, RLIMIT_NOFILE 777. */
let running: string;
let runningPid: number;
const created: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-exec-'));
  fifoDir = join(workDir, 'state', 'exec');
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  tasks = new ContainerdTasks({ api, runcRoot: join(dirname(containerd.address), 'runc') });
  exec = new ContainerdExec({ api, fifoDir });
  running = await createContainer('running', ['sleep', '1000']);
  runningPid = (await tasks.start(running, { terminal: false })).pid;
});

after(async () => {
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

const newId = (name: string): string => `execsync-${process.pid}-${name}`;

/** An unprivileged user, a cwd, an env var and an rlimit the exec must inherit. */
const EXEC_PROCESS = {
  user: { uid: 1000, gid: 1000 },
  env: [...(BUSYBOX_IMAGE.env ?? []), 'FOO=from the container spec'],
  cwd: '/etc',
  rlimits: [{ type: 'RLIMIT_NOFILE', hard: 777, soft: 777 }],
};

async function createContainer(name: string, args: string[]): Promise<string> {
  const id = newId(name);
  created.push(id);
  await createTestContainer(api, runtime, id, args, {
    hostname: 'exec-test',
    process: EXEC_PROCESS,
    mounts: [SYSFS_MOUNT],
  });
  return id;
}

async function pids(id: string): Promise<number[]> {
  const { processes } = await unaryCall<{ processes: Array<{ pid: number }> }>(api.tasks, 'ListPids', {
    container_id: id,
  });
  return processes.map((p) => p.pid).sort((a, b) => a - b);
}

/** This process's open fds that point into the FIFO dir. */
const openFifoFds = (): string[] => openFdsUnder(fifoDir);

/** Only the container's init runs, the shim forgot the exec, and no FIFO or fd is left. */
async function assertNothingLeft(execId: string): Promise<void> {
  assert.deepEqual(await pids(running), [runningPid], 'only the container init may be left');
  await assert.rejects(
    unaryCall(api.tasks, 'Get', { container_id: running, exec_id: execId }),
    (error: unknown) => hasStatus(error, Status.NOT_FOUND),
    `the shim still knows ${execId}`,
  );
  assert.deepEqual(existsSync(fifoDir) ? readdirSync(fifoDir) : [], []);
  assert.deepEqual(openFifoFds(), []);
}

const text = (r: ExecSyncResult): { stdout: string; stderr: string; exitCode: number } => ({
  stdout: r.stdout.toString('utf8'),
  stderr: r.stderr.toString('utf8'),
  exitCode: r.exitCode,
});

describe('ContainerdExec.execSync', () => {
  it('returns what the command wrote to stdout and stderr, and exit code 0', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await exec.execSync(running, {
      cmd: ['sh', '-c', 'echo out; echo err >&2; echo more out'],
      timeoutMs: 10_000,
    });
    assert.deepEqual(text(r), { stdout: 'out\nmore out\n', stderr: 'err\n', exitCode: 0 });
    assert.equal(r.stdoutTruncated, false);
    assert.equal(r.stderrTruncated, false);
    assert.match(r.execId, /^exec-[0-9a-f]{16}$/);
    assert.ok(r.durationMs > 0);
    await assertNothingLeft(r.execId);
  });

  it('returns the exit code of a command that fails', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await exec.execSync(running, { cmd: ['sh', '-c', 'echo before; exit 7'], timeoutMs: 0 });
    assert.deepEqual(text(r), { stdout: 'before\n', stderr: '', exitCode: 7 });
    await assertNothingLeft(r.execId);
  });

  it('finishes commands that write nothing and exit before the launch returns', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // An empty FIFO whose writer came and went during Start has emitted 'end' already;
    // waiting for another 'end' would last until the timeout.
    for (let i = 0; i < 15; i++) {
      // The bug waited out the exec's whole timeout and then failed it with
      // ExecTimeoutError: the exec's own 30 s timeout is the bound, no clock is read here.
      const r = await exec.execSync(running, { cmd: ['true'], timeoutMs: 30_000 });
      assert.deepEqual(text(r), { stdout: '', stderr: '', exitCode: 0 }, `exec ${i}`);
    }
    assert.deepEqual(readdirSync(fifoDir), []);
  });

  it("runs with the container's env, cwd, user, rlimits and no_new_privs, with only args replaced", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const script = 'echo "$FOO"; pwd; id -u; id -g; ulimit -n; grep NoNewPrivs /proc/self/status';
    const r = await exec.execSync(running, { cmd: ['sh', '-c', script], timeoutMs: 10_000 });
    assert.deepEqual(text(r), {
      stdout: 'from the container spec\n/etc\n1000\n1000\n777\nNoNewPrivs:\t1\n',
      stderr: '',
      exitCode: 0,
    });
    await assertNothingLeft(r.execId);
  });

  it('kills and deletes a command that outlives its timeout, then throws ExecTimeoutError', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    let timedOut: ExecTimeoutError | undefined;
    // Longer than the test's own timeout: without the kill, this test times out.
    await assert.rejects(exec.execSync(running, { cmd: ['sleep', '1000'], timeoutMs: 500 }), (error: unknown) => {
      assert.ok(error instanceof ExecTimeoutError, String(error));
      timedOut = error;
      return true;
    });
    assert.equal(timedOut?.containerId, running);
    assert.deepEqual(timedOut?.cmd, ['sleep', '1000']);
    assert.equal(timedOut?.timeoutMs, 500);
    assert.match(timedOut?.message ?? '', /sleep.*1000.*exec-[0-9a-f]{16}.*500 ms/);
    await assertNothingLeft(timedOut!.execId);
    // And as seen from inside the container.
    const ps = await exec.execSync(running, { cmd: ['ps', '-o', 'pid,args'], timeoutMs: 10_000 });
    const sleeps = ps.stdout
      .toString()
      .split('\n')
      .filter((line) => /sleep 1000/.test(line));
    assert.deepEqual(
      sleeps.map((line) => line.trim().split(/\s+/)[0]),
      ['1'],
      ps.stdout.toString(),
    );
  });

  it('rejects with the abort reason when the caller aborts, and leaves nothing running', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const abort = new AbortController();
    const reason = new Error('the caller went away');
    const call = exec.execSync(running, { cmd: ['sleep', '1000'], timeoutMs: 0, signal: abort.signal });
    // Aborting before or after the start must both end in the reason; after is the usual case.
    setTimeout(() => abort.abort(reason), 300);
    await assert.rejects(call, (error: unknown) => error === reason);
    assert.deepEqual(await pids(running), [runningPid]);
    assert.deepEqual(readdirSync(fifoDir), []);
  });

  it('keeps exactly maxOutputBytes per stream, drains the rest, and keeps memory bounded', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const capped = new ContainerdExec({ api, fifoDir, maxOutputBytes: MIB });
    // 128 MiB on stdout: kept whole, it would show in arrayBuffers whatever the GC does (about
    // 35 MiB was seen with the cap, over 250 MiB without).
    const script = `head -c ${128 * MIB} /dev/zero; head -c ${3 * MIB} /dev/zero >&2`;
    const baseline = process.memoryUsage();
    let peak = 0;
    const sample = (): void => {
      const now = process.memoryUsage();
      peak = Math.max(peak, now.arrayBuffers - baseline.arrayBuffers + now.heapUsed - baseline.heapUsed);
    };
    const sampler = setInterval(sample, 5);
    let r: ExecSyncResult;
    try {
      r = await capped.execSync(running, { cmd: ['sh', '-c', script], timeoutMs: 0 });
      sample();
    } finally {
      clearInterval(sampler);
    }
    // Exit 0: head wrote everything, so nothing blocked on a full pipe.
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.length, MIB);
    assert.equal(r.stderr.length, MIB);
    assert.ok(r.stdout.every((byte) => byte === 0));
    assert.equal(r.stdoutTruncated, true);
    assert.equal(r.stderrTruncated, true);
    assert.ok(peak < 96 * MIB, `memory grew by ${Math.round(peak / MIB)} MiB while 128 MiB went through`);
    await assertNothingLeft(r.execId);

    // Exactly the cap is not truncated; one byte more is.
    const exact = await capped.execSync(running, {
      cmd: ['sh', '-c', `head -c ${MIB} /dev/zero; head -c ${MIB + 1} /dev/zero >&2`],
      timeoutMs: 0,
    });
    assert.deepEqual([exact.stdout.length, exact.stdoutTruncated], [MIB, false]);
    assert.deepEqual([exact.stderr.length, exact.stderrTruncated], [MIB, true]);
    await assertNothingLeft(exact.execId);
  });

  it('keeps the output of two concurrent execs in one container apart', { timeout: TEST_TIMEOUT_MS }, async () => {
    const LINES = 2000;
    const loop = (tag: string): string[] => [
      'sh',
      '-c',
      `i=0; while [ $i -lt ${LINES} ]; do echo ${tag}$i; echo ${tag}err$i >&2; i=$((i+1)); done`,
    ];
    const expected = (tag: string): string => Array.from({ length: LINES }, (_, i) => `${tag}${i}\n`).join('');
    const [a, b] = await Promise.all([
      exec.execSync(running, { cmd: loop('A'), timeoutMs: 0 }),
      exec.execSync(running, { cmd: loop('B'), timeoutMs: 0 }),
    ]);
    assert.notEqual(a.execId, b.execId);
    assert.equal(a.stdout.toString(), expected('A'));
    assert.equal(b.stdout.toString(), expected('B'));
    assert.equal(a.stderr.toString(), expected('Aerr'));
    assert.equal(b.stderr.toString(), expected('Berr'));
    await assertNothingLeft(a.execId);
    await assertNothingLeft(b.execId);
  });

  it('fails with the start error for a command that is not there, and deletes the exec', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    let execError: unknown;
    await assert.rejects(exec.execSync(running, { cmd: ['/no/such/binary'], timeoutMs: 10_000 }), (error: unknown) => {
      execError = error;
      return error instanceof ContainerdCallError;
    });
    assert.match(String(execError), /no such file|not found/i);
    assert.deepEqual(await pids(running), [runningPid]);
    assert.deepEqual(readdirSync(fifoDir), []);
    assert.deepEqual(openFifoFds(), []);
  });

  it('fails with ContainerNotRunningError without a task and NotFoundError without a container', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const idle = await createContainer('idle', ['sleep', '1000']);
    await assert.rejects(exec.execSync(idle, { cmd: ['true'], timeoutMs: 1_000 }), (error: unknown) => {
      assert.ok(error instanceof ContainerNotRunningError, String(error));
      assert.equal(error.containerId, idle);
      assert.match(error.message, /not running \(no task\)/);
      return true;
    });
    await assert.rejects(exec.execSync(newId('absent'), { cmd: ['true'], timeoutMs: 1_000 }), NotFoundError);
    assert.deepEqual(readdirSync(fifoDir), []);
  });

  it('fails with ContainerNotRunningError naming the state of a task that has exited or is paused, leaving nothing', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // The task's state is asked only once tasks.Exec or tasks.Start has failed.
    const state = async (id: string): Promise<string> =>
      (await unaryCall<{ process: { status: string } }>(api.tasks, 'Get', { container_id: id })).process.status;
    const exited = await createContainer('exited', ['true']);
    await tasks.start(exited, { terminal: false });
    await until('the task has exited', async () => (await state(exited)) === 'STOPPED');
    const paused = await createContainer('paused', ['sleep', '1000']);
    await tasks.start(paused, { terminal: false });
    await unaryCall(api.tasks, 'Pause', { container_id: paused });
    for (const [id, name] of [
      [exited, 'stopped'],
      [paused, 'paused'],
    ] as const) {
      await assert.rejects(exec.execSync(id, { cmd: ['true'], timeoutMs: 10_000 }), (error: unknown) => {
        assert.ok(error instanceof ContainerNotRunningError, String(error));
        assert.match(error.message, new RegExp(`not running \\(${name}\\)`));
        return true;
      });
    }
    assert.deepEqual(readdirSync(fifoDir), []);
    assert.deepEqual(openFifoFds(), []);
    await unaryCall(api.tasks, 'Resume', { container_id: paused });
    assert.deepEqual((await pids(paused)).length, 1, 'no exec process left in the paused container');
  });

  it('fails with RuntimeUnavailableError when containerd does not answer', { timeout: TEST_TIMEOUT_MS }, async () => {
    const gone = connectContainerd({ address: join(workDir, 'no-such-containerd.sock'), namespace: NAMESPACE });
    try {
      const offline = new ContainerdExec({ api: gone, fifoDir });
      await assert.rejects(offline.execSync('x', { cmd: ['true'], timeoutMs: 1_000 }), RuntimeUnavailableError);
    } finally {
      gone.close();
    }
    assert.deepEqual(readdirSync(fifoDir), []);
  });

  it('rejects a bad request before touching containerd', async () => {
    await assert.rejects(exec.execSync(running, { cmd: [], timeoutMs: 0 }), /cmd: must be a non-empty list/);
    await assert.rejects(exec.execSync(running, { cmd: ['true'], timeoutMs: -1 }), /timeoutMs/);
    assert.throws(() => new ContainerdExec({ api, fifoDir, maxOutputBytes: 0 }), /maxOutputBytes/);
  });

  it('leaves no FIFO directory, open FIFO or exec process behind', async () => {
    assert.deepEqual(readdirSync(fifoDir), []);
    assert.deepEqual(openFifoFds(), []);
    assert.deepEqual(await pids(running), [runningPid]);
  });
});
