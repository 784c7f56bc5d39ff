import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { mountSmallDisk, type SmallDisk } from '../support/small-disk.js';

/*
 * The ledger directory on a 16 MiB tmpfs that a filler file runs out of space. A call
 * whose events cannot be written fails with RESOURCE_EXHAUSTED and leaves nothing
 * behind (no containerd object, no directory, no running task the log does not know);
 * once the filler is removed the same service records again, without a restart. A
 * service started on the full disk exits at once, saying so.
 */

const DISK_BYTES = 16 * 1024 * 1024;

/** A refusal answers within this; the failure it guards against is a wait without end. */
const HANG_BOUND_MS = 60_000;

describe('the ledger on a small disk that fills up', () => {
  let h: CriHarness;
  let disk: SmallDisk | undefined;
  let podId = '';
  const ledger = (): string => join(h.root, 'ledger');
  const pod = {
    metadata: { name: 'disk', uid: 'uid-disk', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const request = (name: string) => ({
    podSandboxId: podId,
    sandboxConfig: pod,
    config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
  });
  const failure = (p: Promise<unknown>): Promise<ServiceError> =>
    p.then(
      () => assert.fail('the call succeeded on a full disk'),
      (e: ServiceError) => e,
    );
  const head = async (): Promise<number> => {
    const r = await runCli(['status', '--socket', h.socket, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { head: number }).head;
  };
  const containerdIds = async (): Promise<string[]> =>
    (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .sort();
  const taskOf = (id: string) =>
    unaryCall<{ process: { status: string } }>(h.api.tasks, 'Get', { container_id: id, exec_id: '' }).then(
      (t) => t.process.status,
      (e: ServiceError) => (e.code === Status.NOT_FOUND ? 'none' : Promise.reject(e)),
    );

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-disk-' });
    // Move the ledger the harness made (with the imported images) onto the small disk.
    await h.serve().stop();
    await rename(ledger(), `${ledger()}.old`);
    disk = mountSmallDisk(ledger(), DISK_BYTES);
    execFileSync('cp', ['-a', `${ledger()}.old/.`, ledger()]);
    await rm(`${ledger()}.old`, { recursive: true });
    await h.restart();
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(async () => {
    await h?.cleanup();
    disk?.unmount();
  });

  it('refuses CreateContainer and StartContainer with RESOURCE_EXHAUSTED while full, leaves nothing half-done, and works again once space is freed', async () => {
    const { containerId: ready } = await h.call<{ containerId: string }>('createContainer', request('ready'));
    const before = {
      head: await head(),
      containerd: await containerdIds(),
      dirs: (await readdir(join(h.root, 'containers'))).sort(),
    };
    const filled = disk!.fill();
    assert.ok(filled > 0);

    const create = await failure(h.call('createContainer', request('blocked')));
    assert.equal(create.code, Status.RESOURCE_EXHAUSTED, create.details);
    assert.match(create.details, /the disk holding the ledger at .* is full/);
    assert.ok(create.details.includes(ledger()), 'the message names the ledger directory');
    const start = await failure(h.call('startContainer', { containerId: ready }));
    assert.equal(start.code, Status.RESOURCE_EXHAUSTED, start.details);

    // Nothing of either call is left: no event, no containerd record, no directory, no task.
    assert.equal(await head(), before.head);
    assert.deepEqual(await containerdIds(), before.containerd);
    assert.deepEqual((await readdir(join(h.root, 'containers'))).sort(), before.dirs);
    assert.equal(await taskOf(ready), 'none', 'the start that could not be recorded was undone');
    const listed = await h.call<{ containers: Array<{ id: string; metadata: { name: string }; state: string }> }>(
      'listContainers',
      {},
    );
    assert.deepEqual(
      listed.containers.map((c) => [c.metadata.name, c.state]),
      [['ready', 'CONTAINER_CREATED']],
    );

    disk!.free();
    const { containerId: blocked } = await h.call<{ containerId: string }>('createContainer', request('blocked'));
    await h.call('startContainer', { containerId: ready });
    const status = await h.call<{ status: { state: string } }>('containerStatus', { containerId: ready });
    assert.equal(status.status.state, 'CONTAINER_RUNNING');
    assert.equal(await taskOf(ready), 'RUNNING');
    assert.ok((await containerdIds()).includes(blocked));
    assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0);
    const against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    assert.equal(against.code, 0, against.stdout + against.stderr);
  });

  it('records the exit of a container stopped while the disk was full once space is freed, without a restart', async (t) => {
    const { containerId } = await h.call<{ containerId: string }>('createContainer', request('stopped-full'));
    await h.call('startContainer', { containerId });
    disk!.fill();
    // A small append can still fit in the slack of the log file's last page; the first
    // one that does not fit (a CreateContainer's spec) fails, and from then on the ledger
    // refuses every write until there is room to reopen it.
    assert.equal((await failure(h.call('createContainer', request('noticed')))).code, Status.RESOURCE_EXHAUSTED);
    const stop = await failure(h.call('stopContainer', { containerId, timeout: 0 }));
    assert.equal(stop.code, Status.RESOURCE_EXHAUSTED, stop.details);
    // The task is gone, the log could not say so yet.
    assert.notEqual(await taskOf(containerId), 'RUNNING');
    disk!.free();
    const freed = Date.now();
    const state = async () =>
      (await h.call<{ status: { state: string; exitCode: number } }>('containerStatus', { containerId })).status;
    const deadline = Date.now() + 15_000;
    while ((await state()).state !== 'CONTAINER_EXITED') {
      if (Date.now() > deadline) assert.fail(`still ${(await state()).state} 15 s after space was freed`);
      await new Promise((r) => setTimeout(r, 100));
    }
    t.diagnostic(
      `exit recorded ${Date.now() - freed} ms after space was freed (exit code ${(await state()).exitCode})`,
    );
    assert.equal((await state()).exitCode, 137);
    // The task is deleted right after its exit is recorded.
    const taskDeadline = Date.now() + 5_000;
    while ((await taskOf(containerId)) !== 'none' && Date.now() < taskDeadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(await taskOf(containerId), 'none');
    assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0);
    const against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    assert.equal(against.code, 0, against.stdout + against.stderr);
  });

  it('frees the name of a CreateContainer whose last events could not be written, once space is freed, without a restart', async (t) => {
    await h.restart(`CreateContainer.SnapshotPrepared=delay(1500)`);
    const before = { containerd: await containerdIds() };
    const call = failure(h.call('createContainer', request('late')));
    // The call is held after its snapshot exists; the disk fills before it records it.
    await new Promise((r) => setTimeout(r, 500));
    disk!.fill();
    assert.equal((await failure(h.call('createContainer', request('noticed-late')))).code, Status.RESOURCE_EXHAUSTED);
    const error = await call;
    assert.equal(error.code, Status.RESOURCE_EXHAUSTED, error.details);
    assert.deepEqual(await containerdIds(), before.containerd, 'the saga undid its containerd record and snapshot');
    disk!.free();
    const freed = Date.now();
    // kubelet retries the same request: once space is back it is served, not refused for the name.
    let retry: { containerId: string } | ServiceError;
    for (;;) {
      retry = await h.call<{ containerId: string }>('createContainer', request('late')).catch((e: ServiceError) => e);
      if (!(retry instanceof Error) || Date.now() - freed > 10_000) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(
      !(retry instanceof Error),
      `the retry still fails ${Date.now() - freed} ms after space was freed: ${retry instanceof Error ? retry.details : ''}`,
    );
    t.diagnostic(`the same request created the container ${Date.now() - freed} ms after space was freed`);
    const verify = await runCli(['verify', '--socket', h.socket]);
    assert.equal(verify.code, 0, verify.stdout);
  });

  it('exits non-zero at once when started on a full disk, saying the disk is full and naming the ledger directory', async (t) => {
    await h.serve().stop();
    disk!.fill();
    const started = Date.now();
    // It refuses rather than waiting for space: without the check it would serve (and
    // hang on its first write) for as long as the disk stays full. The wait is bounded in
    // tens of seconds: past it runCli kills the service and rejects, failing the test.
    const result = await runCli(
      [
        'serve',
        '--root',
        h.root,
        '--state-dir',
        join(h.root, 'state'),
        '--socket',
        h.socket,
        '--containerd-address',
        h.containerd.address,
        '--log-level',
        'warn',
        '--node',
        'test-node',
      ],
      { timeoutMs: HANG_BOUND_MS },
    );
    t.diagnostic(`exited ${result.code} in ${Date.now() - started} ms`);
    assert.equal(result.code, 1, result.stderr);
    assert.ok(
      result.stderr.includes(`cannot start: the disk holding the ledger at ${ledger()} is full`),
      result.stderr,
    );
    disk!.free();
    await h.restart();
    assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0);
  });
});
