import assert from 'node:assert/strict';
import { readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  credentials,
  makeGenericClientConstructor,
  status as Status,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { runCli, startServe, tempRoot } from '../support/cli.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { until } from '../support/until.js';

/*
 * containerd goes away under the service. Restarted in the middle of CreateContainer (a
 * `delay` failpoint holds the call at a step while containerd restarts) or of
 * StartContainer: the call fails with UNAVAILABLE, or succeeds when it truly completed,
 * and once containerd is back the log and containerd agree (verify and verify
 * --against-containerd are clean, nothing is orphaned, the name is free or held by the
 * completed container). And a service started before containerd exists still serves,
 * with Status saying why the runtime is not ready, until containerd appears.
 */

const HOLD_MS = 1_500;

type Condition = { type: string; status: boolean; reason: string; message: string };

const outcome = (p: Promise<unknown>): Promise<{ ok: true } | { ok: false; code: number; details: string }> =>
  p.then(
    () => ({ ok: true }) as const,
    (e: ServiceError) => ({ ok: false, code: e.code, details: e.details }) as const,
  );

describe('containerd restarted under the service', () => {
  let h: CriHarness;
  let podId = '';
  const pod = {
    metadata: { name: 'ctrd', uid: 'uid-ctrd', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const request = (name: string) => ({
    podSandboxId: podId,
    sandboxConfig: pod,
    config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
  });
  const runtimeReady = async (): Promise<boolean> => {
    const s = await h.call<{ status: { conditions: Condition[] } }>('status', {});
    return s.status.conditions.find((c) => c.type === 'RuntimeReady')!.status;
  };
  const containerdIds = async (): Promise<string[]> =>
    (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers.map((c) => c.id);
  const activeSnapshots = async (): Promise<string[]> =>
    (
      await collectStream<{ info: Array<{ name: string; kind: string }> }>(h.api.snapshots, 'List', {
        snapshotter: 'overlayfs',
      })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE')
      .map((i) => i.name);
  const taskOf = (id: string): Promise<string> =>
    unaryCall<{ process: { status: string } }>(h.api.tasks, 'Get', { container_id: id, exec_id: '' }).then(
      (t) => t.process.status,
      (e: ServiceError) => (e.code === Status.NOT_FOUND ? 'none' : Promise.reject(e)),
    );
  const inFlight = async (): Promise<number> =>
    (
      JSON.parse((await runCli(['status', '--socket', h.socket, '--json'])).stdout) as {
        counts: { operationsInFlight: number };
      }
    ).counts.operationsInFlight;

  /** Once containerd answers the service again: no saga in flight, verify and verify --against-containerd clean. */
  async function consistent(t: TestContext): Promise<void> {
    await until('the service to see containerd again', runtimeReady);
    await until('sagas to end', async () => (await inFlight()) === 0);
    const verify = await runCli(['verify', '--socket', h.socket]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    // Reconciliation after the reconnection may still be removing what a failed undo left.
    let against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    const deadline = Date.now() + 10_000;
    while (against.code !== 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      against = await runCli([
        'verify',
        '--against-containerd',
        '--socket',
        h.socket,
        '--containerd-address',
        h.containerd.address,
      ]);
    }
    if (against.code !== 0) t.diagnostic(against.stdout);
    assert.equal(against.code, 0, against.stdout + against.stderr);
  }

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-ctrd-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(() => h?.cleanup());

  /** What exists once the held call has done `step`'s side effect: the failpoint holds it there. */
  const reached: Record<
    string,
    (before: { dirs: string[]; containers: string[]; snapshots: string[] }) => Promise<boolean>
  > = {
    Directories: async (b) =>
      (await readdir(join(h.root, 'containers')).catch((): string[] => [])).some((d) => !b.dirs.includes(d)),
    ContainerRecord: async (b) => (await containerdIds()).some((id) => !b.containers.includes(id)),
    SnapshotPrepared: async (b) => (await activeSnapshots()).some((k) => !b.snapshots.includes(k)),
  };
  const snapshotOf = async () => ({
    dirs: await readdir(join(h.root, 'containers')).catch((): string[] => []),
    containers: (await containerdIds()).sort(),
    snapshots: (await activeSnapshots()).sort(),
  });

  // Held after Directories or ContainerRecord, the call's next step needs containerd; held
  // after SnapshotPrepared, only the log is left to write, so the call completes.
  for (const [step, expected] of [
    ['Directories', 'UNAVAILABLE'],
    ['ContainerRecord', 'UNAVAILABLE'],
    ['SnapshotPrepared', 'OK'],
  ] as const) {
    it(`CreateContainer held after ${step} while containerd is down: ${expected}, then the log and containerd agree`, async (t) => {
      await h.restart(`CreateContainer.${step}=delay(${HOLD_MS})`);
      const name = `down-${step.toLowerCase()}`;
      const before = await snapshotOf();
      const call = h.call<{ containerId: string }>('createContainer', request(name));
      const result = outcome(call);
      await until(`the call to reach ${step}`, () => reached[step]!(before));
      // containerd stays down until the held call has run on past its step and ended.
      await h.containerd.restart(() => result.then(() => undefined));
      const r = await result;
      t.diagnostic(`outcome: ${JSON.stringify(r)}`);
      await consistent(t);
      if (expected === 'OK') {
        assert.equal(r.ok, true, JSON.stringify(r));
        const { containerId } = await call;
        assert.ok((await containerdIds()).includes(containerId));
        // The name is held by the completed container: the same request gets its id.
        assert.equal(
          (await h.call<{ containerId: string }>('createContainer', request(name))).containerId,
          containerId,
        );
        await h.call('removeContainer', { containerId });
        return;
      }
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.equal(r.code, Status.UNAVAILABLE, r.details);
        assert.match(r.details, /containerd is unavailable/);
      }
      const now = await snapshotOf();
      assert.deepEqual(
        [now.dirs, now.containers, now.snapshots],
        [before.dirs, before.containers, before.snapshots],
        'no directory, containerd record or snapshot is left',
      );
      // The name is free: the same request creates the container now.
      const { containerId } = await h.call<{ containerId: string }>('createContainer', request(name));
      await h.call('removeContainer', { containerId });
    });
  }

  it('CreateContainer held while containerd restarts and is back before the call goes on: it completes', async (t) => {
    await h.restart('CreateContainer.Directories=delay(3000)');
    const before = await snapshotOf();
    const call = h.call<{ containerId: string }>('createContainer', request('survives'));
    const result = outcome(call);
    await until('the call to reach Directories', () => reached.Directories!(before));
    const restartStarted = Date.now();
    await h.containerd.restart();
    t.diagnostic(`containerd restarted in ${Date.now() - restartStarted} ms`);
    const r = await result;
    assert.equal(r.ok, true, JSON.stringify(r));
    const { containerId } = await call;
    await consistent(t);
    assert.ok((await containerdIds()).includes(containerId));
    await h.call('removeContainer', { containerId });
  });

  it('StartContainer calls spread over a containerd restart: each succeeds or fails UNAVAILABLE, and the log and containerd agree after', async (t) => {
    await h.restart();
    const ids: string[] = [];
    for (let i = 0; i < 8; i++)
      ids.push((await h.call<{ containerId: string }>('createContainer', request(`start-${i}`))).containerId);
    const calls: Array<ReturnType<typeof outcome>> = [];
    const issuing = (async () => {
      for (const id of ids) {
        calls.push(outcome(h.call('startContainer', { containerId: id })));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // Restart once the first start is under way in containerd (its task exists).
    await until('a task to exist', async () => (await taskOf(ids[0]!)) !== 'none');
    await h.containerd.restart(() => new Promise((r) => setTimeout(r, 600)));
    await issuing;
    const results = await Promise.all(calls);
    t.diagnostic(`outcomes: ${results.map((r) => (r.ok ? 'OK' : Status[r.code])).join(' ')}`);
    for (const r of results) if (!r.ok) assert.equal(r.code, Status.UNAVAILABLE, r.details);
    assert.ok(
      results.some((r) => !r.ok),
      'some start met containerd down',
    );
    await consistent(t);
    for (const [i, id] of ids.entries()) {
      const { status } = await h.call<{ status: { state: string; reason: string } }>('containerStatus', {
        containerId: id,
      });
      const task = await taskOf(id);
      t.diagnostic(
        `start-${i}: ${results[i]!.ok ? 'OK' : 'UNAVAILABLE'} -> ${status.state} ${status.reason}, task ${task}`,
      );
      if (results[i]!.ok) assert.deepEqual([status.state, task], ['CONTAINER_RUNNING', 'RUNNING'], `start-${i}`);
      else
        assert.deepEqual(
          [status.state === 'CONTAINER_RUNNING' ? 'RUNNING' : 'not running', task],
          ['not running', 'none'],
          `start-${i}: ${status.state}, task ${task}: a failed start leaves no task`,
        );
    }
    const strays = h
      .serve()
      .stderr()
      .split('\n')
      .filter((l) => l.includes('deleted a task the log does not account for')).length;
    t.diagnostic(`stray tasks deleted after the reconnection: ${strays}`);
    for (const id of ids) await h.call('removeContainer', { containerId: id });
  });
});

describe('containerd missing when the service starts', () => {
  it('starts, answers Version, says in Status which containerd address does not answer, and becomes ready once containerd appears', async (t) => {
    const temp = await tempRoot('cri-ledger-e2e-noctrd-');
    let containerd: PrivateContainerd | undefined;
    let serve: Awaited<ReturnType<typeof startServe>> | undefined;
    let client: (Client & Record<string, Function>) | undefined;
    try {
      const address = join(temp.dir, 'later.sock');
      const socket = join(temp.dir, 'cri.sock');
      serve = await startServe({ root: temp.dir, socket, args: ['--containerd-address', address] });
      const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
      client = new Constructor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, Function>;
      const call = <T>(method: string, req: object): Promise<T> =>
        new Promise((ok, fail) => client![method]!.call(client, req, (e: Error | null, r: T) => (e ? fail(e) : ok(r))));
      const version = await call<{ runtimeName: string }>('version', {});
      assert.equal(version.runtimeName, 'cri-ledger');
      const ready = async (): Promise<Condition> =>
        (await call<{ status: { conditions: Condition[] } }>('status', {})).status.conditions.find(
          (c) => c.type === 'RuntimeReady',
        )!;
      const down = await ready();
      assert.equal(down.status, false);
      assert.equal(down.reason, 'ContainerdUnreachable');
      assert.ok(down.message.includes(address), down.message);
      // containerd appears at the configured address a while later.
      await new Promise((r) => setTimeout(r, 3_000));
      containerd = await startContainerd();
      await symlink(containerd.address, address);
      const appeared = Date.now();
      // Within seconds: the health probe is cached for 1 s, and the channel reconnects on its own.
      await until('RuntimeReady', async () => (await ready()).status, 30_000);
      t.diagnostic(`RuntimeReady ${Date.now() - appeared} ms after containerd appeared`);
      assert.ok(Date.now() - appeared < 10_000, `ready ${Date.now() - appeared} ms after containerd appeared`);
    } finally {
      client?.close();
      await serve?.stop('SIGKILL');
      await containerd?.stop();
      await temp.cleanup();
    }
  });
});
