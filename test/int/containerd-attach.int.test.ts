import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { ContainerIo } from '../../src/commands/ports.js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { ContainerdAttach } from '../../src/adapters/containerd/containerd-attach.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import { ContainerdTasks } from '../../src/adapters/containerd/containerd-tasks.js';
import { ContainerNotRunningError } from '../../src/adapters/containerd/exec-process.js';
import { HostContainerLogs } from '../../src/adapters/logs/host-container-logs.js';
import { mkfifo } from '../../src/adapters/native/syscalls.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';
import { createTestContainer, DEVPTS_MOUNT, tearDownRuncTests } from '../support/runc-containers.js';
import { seen } from '../support/streams.js';
import { until } from '../support/until.js';

const NAMESPACE = 'cri-ledger-attach-test';
const TEST_TIMEOUT_MS = 60_000;
const MAX_BUFFERED_BYTES = 64 * 1024;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let workDir: string;
let logs: HostContainerLogs;
let attach: ContainerdAttach;
const created: string[] = [];

const ioDir = (id: string): string => join(workDir, 'io', id);

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-attach-'));
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  tasks = new ContainerdTasks({ api, runcRoot: join(dirname(containerd.address), 'runc') });
  logs = new HostContainerLogs({ logger: pino({ level: 'silent' }) });
  attach = new ContainerdAttach({
    api,
    output: logs,
    stdinPath: (id) => join(ioDir(id), 'stdin'),
    maxBufferedBytes: MAX_BUFFERED_BYTES,
  });
});

after(async () => {
  await logs.closeAll();
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

/** Creates and starts a container as StartContainer does: FIFOs, the log reader, then the task. */
async function runContainer(name: string, script: string, o: { stdin: boolean; tty: boolean }): Promise<string> {
  const id = `attach-${process.pid}-${name}`;
  created.push(id);
  await createTestContainer(api, runtime, id, ['sh', '-c', script], {
    process: { terminal: o.tty },
    mounts: [DEVPTS_MOUNT],
  });
  const dir = ioDir(id);
  await mkdir(dir, { recursive: true });
  const io: ContainerIo = {
    stdout: join(dir, 'stdout'),
    stderr: o.tty ? join(dir, 'stdout') : join(dir, 'stderr'),
    terminal: o.tty,
    ...(o.stdin ? { stdin: join(dir, 'stdin') } : {}),
  };
  for (const path of new Set([io.stdout, io.stderr, ...(io.stdin ? [io.stdin] : [])])) mkfifo(path, 0o600);
  await logs.attach(id, { logPath: join(dir, 'log'), io });
  await tasks.start(id, io);
  return id;
}

const logOf = (id: string): Promise<string> => readFile(join(ioDir(id), 'log'), 'utf8');

describe('ContainerdAttach.attachContainer', { timeout: TEST_TIMEOUT_MS }, () => {
  it("copies the container's output to the client while the log goes on getting it", async () => {
    const id = await runContainer(
      'output',
      'i=0; while true; do echo out$i; echo err$i >&2; i=$((i+1)); sleep 0.05; done',
      { stdin: false, tty: false },
    );
    await until('some output in the log', async () => (await logOf(id)).includes('out2'));
    const session = await attach.attachContainer(id, { stdin: false, stdout: true, stderr: true, tty: false });
    const [out, err] = await Promise.all([
      seen(session.stdout, /out\d+\n(.|\n)*out\d+\n/),
      seen(session.stderr, /err\d+\n/),
    ]);
    await session.detach();
    assert.equal(await session.ended, 'detached');
    // The copy starts at the attach (the log had out2 already) and holds the very lines the log gets.
    assert.notEqual(out.split('\n')[0], 'out0');
    const records = [
      ...out
        .trim()
        .split('\n')
        .map((line) => ` stdout F ${line}\n`),
      ...err
        .trim()
        .split('\n')
        .map((line) => ` stderr F ${line}\n`),
    ];
    await until('the log to hold what the client saw', async () => {
      const log = await logOf(id);
      return records.every((record) => log.includes(record));
    });
    const log = await logOf(id);
    // Detached: the container goes on and so does its log.
    const size = log.length;
    await until('the log to grow after the detach', async () => (await logOf(id)).length > size);
    assert.equal((await tasks.state(id))?.status, 'RUNNING');
  });

  it('forwards stdin; without stdin_once a closed stdin ends only the attach', async () => {
    const id = await runContainer('stdin', 'while read line; do echo "got $line"; done; echo eof; sleep 1000', {
      stdin: true,
      tty: false,
    });
    const first = await attach.attachContainer(id, { stdin: true, stdout: true, stderr: false, tty: false });
    first.stdin?.write('a\n');
    await seen(first.stdout, /got a\n/);
    first.stdin?.end();
    assert.equal(await first.ended, 'stdin-closed');
    const second = await attach.attachContainer(id, { stdin: true, stdout: true, stderr: false, tty: false });
    second.stdin?.write('b\n');
    await seen(second.stdout, /got b\n/);
    await second.detach();
    assert.equal(await second.ended, 'detached');
    // Attaches came and went; the container's stdin is still open.
    const third = await attach.attachContainer(id, { stdin: true, stdout: true, stderr: false, tty: false });
    third.stdin?.write('c\n');
    await seen(third.stdout, /got c\n/);
    await third.detach();
    await until('the log to have all three', async () => /got a\n[\s\S]*got b\n[\s\S]*got c\n/.test(await logOf(id)));
    assert.doesNotMatch(await logOf(id), /eof/);
  });

  it("with stdin_once, the first attach's closed stdin closes the container's stdin", async () => {
    const id = await runContainer('once', 'while read line; do echo "got $line"; done; echo eof', {
      stdin: true,
      tty: false,
    });
    const session = await attach.attachContainer(id, {
      stdin: true,
      stdout: true,
      stderr: false,
      tty: false,
      stdinOnce: true,
    });
    const out = seen(session.stdout, /got c\neof\n/);
    session.stdin?.end('c\n');
    await out;
    assert.equal(await session.ended, 'container-exited');
    assert.equal((await tasks.wait(id)).exitCode, 0);
    await assert.rejects(
      attach.attachContainer(id, { stdin: true, stdout: false, stderr: false, tty: false, stdinOnce: true }),
      (error: unknown) => error instanceof FailedPreconditionError || error instanceof ContainerNotRunningError,
    );
  });

  it("resizes a tty container's terminal", async () => {
    const id = await runContainer('tty', 'while true; do stty size; sleep 0.1; done', { stdin: false, tty: true });
    const session = await attach.attachContainer(id, { stdin: false, stdout: true, stderr: false, tty: true });
    await session.resize(77, 22);
    await seen(session.stdout, /22 77\r\n/);
    await session.detach();
    // The log keeps the line (its writer drops the terminal's \r).
    assert.match(await logOf(id), /stdout F 22 77\r?\n/);
  });

  it('drops output for a client that does not read, never the log', async () => {
    const line = 'x'.repeat(4095);
    const id = await runContainer(
      'slow',
      `i=0; while [ $i -lt 200 ]; do echo ${line}; i=$((i+1)); done; echo done; sleep 1000`,
      { stdin: false, tty: false },
    );
    const session = await attach.attachContainer(id, { stdin: false, stdout: true, stderr: false, tty: false });
    await until('the whole output in the log', async () => (await logOf(id)).includes('stdout F done\n'));
    assert.ok(session.dropped().stdout > 0, 'a client that never reads must lose output');
    assert.ok((session.stdout?.readableLength ?? 0) <= MAX_BUFFERED_BYTES);
    assert.equal((await logOf(id)).split(`stdout F ${line}\n`).length - 1, 200);
    await session.detach();
  });

  it('refuses stdin of a container made without it, bad requests, and a container that is not running', async () => {
    const id = await runContainer('nostdin', 'sleep 1000', { stdin: false, tty: false });
    await assert.rejects(
      attach.attachContainer(id, { stdin: true, stdout: true, stderr: false, tty: false }),
      /not created with stdin/,
    );
    await assert.rejects(
      attach.attachContainer(id, { stdin: false, stdout: false, stderr: false, tty: false }),
      InvalidArgumentError,
    );
    await assert.rejects(
      attach.attachContainer(id, { stdin: false, stdout: true, stderr: true, tty: true }),
      InvalidArgumentError,
    );
    await assert.rejects(
      attach.attachContainer('no-such-container', { stdin: false, stdout: true, stderr: false, tty: false }),
      ContainerNotRunningError,
    );
  });
});
