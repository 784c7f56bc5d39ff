import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, createReadStream, existsSync, openSync, readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import { ContainerdTasks, signalNumber } from '../../src/adapters/containerd/containerd-tasks.js';
import { RuntimeUnavailableError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import {
  createTestContainer,
  tearDownRuncTests,
  DEVPTS_MOUNT,
  SYSFS_MOUNT,
  testCgroupPath,
} from '../support/runc-containers.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';

const NAMESPACE = 'cri-ledger-tasks-test';
const SIGTERM = 15;
// RFC 3339 with nine fraction digits, in UTC.
const EXITED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let runcRoot: string;
let workDir: string;
const created: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-tasks-'));
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  runcRoot = join(dirname(containerd.address), 'runc');
  tasks = new ContainerdTasks({ api, runcRoot });
});

after(async () => {
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

/** Unique per run: cgroup paths are machine-wide, and another test file may run beside this one. */
const newId = (name: string): string => `tasks-${process.pid}-${name}`;
const cgroupPath = testCgroupPath;

async function createContainer(name: string, args: string[]): Promise<string> {
  const id = newId(name);
  created.push(id);
  await createTestContainer(api, runtime, id, args, { hostname: 'tasks-test', mounts: [DEVPTS_MOUNT, SYSFS_MOUNT] });
  return id;
}

async function removeContainer(id: string): Promise<void> {
  await runtime.deleteContainer(id);
  await runtime.removeSnapshot(id, 'overlayfs');
}

function mkfifo(name: string): string {
  const path = join(workDir, name);
  execFileSync('mkfifo', ['-m', '0600', path]);
  return path;
}

/**
 * Reads a FIFO to its end. The open blocks (in libuv's thread pool) until the shim opens
 * the write side; `release` unblocks it when the task never did.
 */
function readFifo(path: string): { text: Promise<string>; release(): void } {
  const chunks: Buffer[] = [];
  const stream = createReadStream(path);
  const text = new Promise<string>((resolve, reject) => {
    stream.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
  });
  return {
    text,
    release: () => {
      if (stream.pending) closeSync(openSync(path, 'r+'));
    },
  };
}

function cgroupExists(id: string): boolean {
  return existsSync(join('/sys/fs/cgroup/pids', cgroupPath(id)));
}

async function taskIds(): Promise<string[]> {
  const { tasks: list } = await unaryCall<{ tasks: Array<{ container_id: string }> }>(api.tasks, 'List', {
    filter: '',
  });
  return list.map((t) => t.container_id);
}

describe('ContainerdTasks', () => {
  it('runs a task with stdout and stderr FIFOs and reports its exit until it is deleted', async () => {
    const id = await createContainer('exit3', ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    const [stdout, stderr] = [mkfifo('exit3-stdout'), mkfifo('exit3-stderr')];
    const out = readFifo(stdout);
    const err = readFifo(stderr);
    try {
      const { pid } = await tasks.start(id, { stdout, stderr, terminal: false });
      assert.ok(pid > 0);
      const exit = await tasks.wait(id);
      assert.equal(exit.exitCode, 3);
      assert.match(exit.exitedAt, EXITED_AT);
      assert.ok(Math.abs(Date.parse(exit.exitedAt) - Date.now()) < 60_000, exit.exitedAt);
      assert.equal(await out.text, 'out\n');
      assert.equal(await err.text, 'err\n');
      // The exit stays readable until the task is deleted.
      assert.deepEqual(await tasks.state(id), { status: 'STOPPED', pid, ...exit });
      assert.deepEqual(await tasks.wait(id), exit);
      assert.deepEqual(await tasks.delete(id), { exitCode: 3 });
      assert.equal(await tasks.delete(id), undefined);
      assert.equal(await tasks.state(id), undefined);
      assert.equal(cgroupExists(id), false, 'runc removes the cgroup when the task is deleted');
    } finally {
      out.release();
      err.release();
    }
    await removeContainer(id);
  });

  it('keeps runc state under runcRoot and kills a task that ignores the stop signal', async () => {
    // busybox sleep as pid 1 has no SIGTERM handler, and the kernel drops unhandled signals to a pid namespace's init.
    const id = await createContainer('sleep', ['sleep', '1000']);
    await tasks.start(id, { terminal: false });
    const running = await tasks.state(id);
    assert.equal(running?.status, 'RUNNING');
    assert.ok(existsSync(join(runcRoot, NAMESPACE, id, 'state.json')), `no runc state under ${runcRoot}`);
    assert.equal(existsSync(join('/run/containerd/runc', NAMESPACE)), false);
    assert.equal(cgroupExists(id), true);

    const began = Date.now();
    const stopped = await tasks.stop(id, SIGTERM, 300);
    assert.ok(Date.now() - began >= 300, 'stop must wait out the timeout before the SIGKILL');
    assert.equal(stopped?.killed, true);
    assert.equal(stopped?.exitCode, 137);
    assert.match(stopped?.exitedAt ?? '', EXITED_AT);
    // Stopping again reports the same exit without a kill.
    assert.deepEqual(await tasks.stop(id, SIGTERM, 300), { ...stopped, killed: false });

    assert.deepEqual(await tasks.delete(id), { exitCode: 137 });
    assert.equal(existsSync(join(runcRoot, NAMESPACE, id)), false, 'runc state is removed with the task');
    assert.equal(cgroupExists(id), false);
    await removeContainer(id);
  });

  it('stops a task that exits on the stop signal without killing it', async () => {
    const id = await createContainer('trap', ['sh', '-c', "trap 'exit 0' TERM; sleep 1000 & wait $!"]);
    await tasks.start(id, { terminal: false });
    // The trap must be installed before the signal comes: wait for the shell's child.
    for (let i = 0; i < 100 && (await processCount(id)) < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const stopped = await tasks.stop(id, SIGTERM, 5_000);
    assert.equal(stopped?.killed, false);
    assert.equal(stopped?.exitCode, 0);
    // The kernel killed the orphaned sleep with its pid namespace's init; a late kill is fine.
    await tasks.kill(id, 'KILL', { all: true });
    assert.deepEqual(await tasks.delete(id), { exitCode: 0 });
    await removeContainer(id);
  });

  it('treats kill, stop, delete and state of a container without a task as nothing to do', async () => {
    const id = newId('absent');
    await tasks.kill(id, SIGTERM);
    assert.equal(await tasks.stop(id, SIGTERM, 100), undefined);
    assert.equal(await tasks.delete(id), undefined);
    assert.equal(await tasks.state(id), undefined);
  });

  it('parses signals the way images name them', () => {
    assert.equal(signalNumber('SIGTERM'), 15);
    assert.equal(signalNumber('term'), 15);
    assert.equal(signalNumber('9'), 9);
    assert.equal(signalNumber(2), 2);
    assert.throws(() => signalNumber('SIGNOPE'), TypeError);
  });

  it('fails with RuntimeUnavailableError when containerd does not answer', async () => {
    const gone = connectContainerd({
      address: join(tmpdir(), 'cri-ledger-no-such-containerd.sock'),
      namespace: NAMESPACE,
    });
    try {
      const offline = new ContainerdTasks({ api: gone, runcRoot });
      await assert.rejects(offline.state('x'), RuntimeUnavailableError);
      await assert.rejects(offline.start('x', { terminal: false }), RuntimeUnavailableError);
      await assert.rejects(offline.delete('x'), RuntimeUnavailableError);
    } finally {
      gone.close();
    }
  });

  it('leaves no task, container or snapshot behind', async () => {
    assert.deepEqual(await taskIds(), []);
    const { containers } = await unaryCall<{ containers: unknown[] }>(api.containers, 'List', { filters: [] });
    assert.deepEqual(containers, []);
    const pages = await collectStream<{ info: Array<{ name: string; kind: string }> }>(api.snapshots, 'List', {
      snapshotter: 'overlayfs',
      filters: [],
    });
    assert.deepEqual(
      pages.flatMap((p) => p.info).filter((s) => s.kind !== 'COMMITTED'),
      [],
    );
    assert.deepEqual(readdirSync(join(runcRoot, NAMESPACE)), []);
  });
});

async function processCount(id: string): Promise<number> {
  const { processes } = await unaryCall<{ processes: unknown[] }>(api.tasks, 'ListPids', { container_id: id });
  return processes.length;
}
