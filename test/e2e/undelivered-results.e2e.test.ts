import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { until } from '../support/until.js';

/*
 * Idempotent retries against real containerd (issue 6): kubelet's CreateContainer or
 * RunPodSandbox deadline passes while the saga still runs (a `delay` failpoint holds a
 * step, the client sets a short deadline), the saga finishes anyway, and then:
 *   (a) a retry with the same request gets the same id;
 *   (b) a request with another digest replaces the undelivered result, leaking nothing;
 *   (c) a delivered result makes another digest ALREADY_EXISTS, naming the holder;
 *   (d) a result nobody claims is removed after the configured time, also when the
 *       service restarted in between;
 *   (e) a crash after containerd holds the record and the snapshot, before
 *       ContainerCreated is recorded, is rolled forward at the next start.
 */

interface LoggedEvent {
  seq: number;
  at: string;
  stream: string;
  type: string;
  data: Record<string, unknown> & { discarded?: { reason: string; undone: Array<{ ok: boolean }> } };
}

const SLOW_CREATE = 'CreateContainer.SnapshotPrepared=delay(1500)';
const SHORT_DEADLINE_MS = 300;

describe('retries whose first answer reached nobody', () => {
  let h: CriHarness;
  let podId = '';
  const podConfig = (name: string) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  });
  const base = podConfig('retry-base');
  const createRequest = (name: string, env = 'v1') => ({
    podSandboxId: podId,
    sandboxConfig: base,
    config: {
      metadata: { name, attempt: 0 },
      image: { image: 'busybox' },
      command: ['sleep', '3600'],
      envs: [{ key: 'VERSION', value: env }],
    },
  });
  const fullName = (name: string) => `${name}_retry-base_default_uid-retry-base_0`;
  /** Calls with a client deadline that passes while the slowed saga runs: DEADLINE_EXCEEDED. */
  const callPastDeadline = async (method: string, request: object) => {
    const error = (await h
      .call(method, request, { deadline: Date.now() + SHORT_DEADLINE_MS })
      .catch((e: ServiceError) => e)) as ServiceError;
    assert.equal(error.code, Status.DEADLINE_EXCEEDED, `the call outlives its deadline: ${String(error)}`);
  };
  const events = async (type?: string): Promise<LoggedEvent[]> => {
    const r = await runCli(['events', '--socket', h.socket, '--json', ...(type ? ['--type', type] : [])]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as LoggedEvent);
  };
  /** The stream's events, without the stall watchdog's OperationStalled (its place depends on timing). */
  const streamOf = async (id: string) =>
    (await events()).filter((e) => e.stream.endsWith(id) && e.type !== 'OperationStalled');
  const stallsOf = async (id: string) => (await events('OperationStalled')).filter((e) => e.stream.endsWith(id));
  const undeliveredNamed = async (name: string) =>
    (await events('ResultUndelivered')).filter((e) => e.data.name === name);
  const listed = async () =>
    (await h.call<{ containers: Array<{ id: string; metadata: { name: string } }> }>('listContainers', {})).containers;
  /** containerd records and active snapshots other than the base pod's, and container dirs. */
  const held = async () => ({
    containers: (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .filter((id) => id !== podId)
      .sort(),
    snapshots: (
      await collectStream<{ info: Array<{ name: string; kind: string }> }>(h.api.snapshots, 'List', {
        snapshotter: 'overlayfs',
      })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE' && i.name !== podId)
      .map((i) => i.name)
      .sort(),
    containerDirs: (await readdir(join(h.root, 'containers')).catch((): string[] => [])).sort(),
  });
  const only = (...ids: string[]) => ({
    containers: [...ids].sort(),
    snapshots: [...ids].sort(),
    containerDirs: [...ids].sort(),
  });
  const verifyClean = async () => {
    const plain = await runCli(['verify', '--socket', h.socket]);
    assert.equal(plain.code, 0, plain.stdout + plain.stderr);
    const against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    assert.equal(against.code, 0, against.stdout + against.stderr);
  };
  const removeAll = async () => {
    for (const c of await listed()) await h.call('removeContainer', { containerId: c.id });
    assert.deepEqual(await held(), only());
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-retry-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: base })).podSandboxId;
  });
  after(() => h?.cleanup());

  it('(a) serves the same id to a retry with the same request after the deadline passed mid-saga', async () => {
    await h.restart(SLOW_CREATE);
    const request = createRequest('same-digest');
    await callPastDeadline('createContainer', request);
    // kubelet retries at once; the first saga still runs, and the retry waits for it.
    const { containerId } = await h.call<{ containerId: string }>('createContainer', request);
    const types = (await streamOf(containerId)).map((e) => e.type);
    assert.deepEqual(types, [
      'NameReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'ContainerCreated',
      'ResultUndelivered',
      'RetryServed',
    ]);
    // The stall watchdog saw the same deadline pass in the held step.
    assert.deepEqual(
      (await stallsOf(containerId)).map((e) => e.data.step),
      ['SnapshotPrepared'],
    );
    assert.deepEqual(
      (await listed()).map((c) => c.id),
      [containerId],
    );
    assert.deepEqual(await held(), only(containerId));
    // Served from the log once more, without waiting: same id, one more RetryServed.
    assert.equal((await h.call<{ containerId: string }>('createContainer', request)).containerId, containerId);
    assert.equal((await streamOf(containerId)).filter((e) => e.type === 'RetryServed').length, 2);
    await verifyClean();
    await removeAll();
  });

  it('(a) the same for RunPodSandbox', async () => {
    await h.restart('RunPodSandbox.SnapshotPrepared=delay(1500)');
    const config = podConfig('slow-pod');
    await callPastDeadline('runPodSandbox', { config });
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config });
    assert.deepEqual((await streamOf(podSandboxId)).map((e) => e.type).slice(-2), ['ResultUndelivered', 'RetryServed']);
    const pods = (await h.call<{ items: Array<{ id: string }> }>('listPodSandbox', {})).items.map((p) => p.id);
    assert.deepEqual(pods.sort(), [podId, podSandboxId].sort());
    await h.call('stopPodSandbox', { podSandboxId });
    await h.call('removePodSandbox', { podSandboxId });
  });

  it('(b) replaces an undelivered result for a request with another digest, leaking nothing', async () => {
    await h.restart(SLOW_CREATE);
    await callPastDeadline('createContainer', createRequest('other-digest', 'v1'));
    // kubelet's retry carries a changed config, while the first saga still runs.
    const { containerId } = await h.call<{ containerId: string }>(
      'createContainer',
      createRequest('other-digest', 'v2'),
    );
    const undelivered = await undeliveredNamed(fullName('other-digest'));
    assert.equal(undelivered.length, 1, 'the first result was recorded as undelivered');
    const oldId = undelivered[0]!.stream.slice('container-'.length);
    assert.notEqual(oldId, containerId);
    const removed = (await streamOf(oldId)).at(-1)!;
    assert.equal(removed.type, 'ContainerRemoved');
    assert.equal(removed.data.discarded?.reason, 'superseded');
    assert.ok(removed.data.discarded?.undone.every((u) => u.ok));
    assert.deepEqual(
      (await listed()).map((c) => c.id),
      [containerId],
    );
    assert.deepEqual(await held(), only(containerId));
    await verifyClean();
    await removeAll();
  });

  it('(b) replaces it after a restart too, read from the log', async () => {
    await h.restart(SLOW_CREATE);
    await callPastDeadline('createContainer', createRequest('other-after-restart', 'v1'));
    await until(
      'the undelivered result',
      async () => (await undeliveredNamed(fullName('other-after-restart'))).length === 1,
    );
    const oldId = (await undeliveredNamed(fullName('other-after-restart')))[0]!.stream.slice('container-'.length);
    await h.restart();
    const { containerId } = await h.call<{ containerId: string }>(
      'createContainer',
      createRequest('other-after-restart', 'v2'),
    );
    assert.notEqual(containerId, oldId);
    assert.equal((await streamOf(oldId)).at(-1)?.data.discarded?.reason, 'superseded');
    assert.deepEqual(await held(), only(containerId));
    await verifyClean();
    await removeAll();
  });

  it('(b) the same for RunPodSandbox: the undelivered pod is removed, the new one runs', async () => {
    await h.restart('RunPodSandbox.SnapshotPrepared=delay(1500)');
    const config = (version: string) => ({ ...podConfig('replaced-pod'), labels: { version } });
    await callPastDeadline('runPodSandbox', { config: config('v1') });
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: config('v2') });
    const [undelivered] = await undeliveredNamed('replaced-pod_default_uid-replaced-pod_0');
    const oldId = undelivered!.stream.slice('sandbox-'.length);
    assert.notEqual(oldId, podSandboxId);
    const removed = (await streamOf(oldId)).at(-1)!;
    assert.equal(removed.type, 'SandboxRemoved');
    assert.equal(removed.data.discarded?.reason, 'superseded');
    const pods = (await h.call<{ items: Array<{ id: string }> }>('listPodSandbox', {})).items.map((p) => p.id);
    assert.deepEqual(pods.sort(), [podId, podSandboxId].sort());
    assert.deepEqual(
      await held(),
      { ...only(podSandboxId), containerDirs: [] },
      'only the new pause container and its snapshot',
    );
    assert.deepEqual(
      (await readdir(join(h.root, 'sandboxes'))).filter((d) => d !== podId),
      [podSandboxId],
    );
    await verifyClean();
    await h.call('stopPodSandbox', { podSandboxId });
    await h.call('removePodSandbox', { podSandboxId });
    assert.deepEqual(await held(), only());
  });

  it('(c) refuses another digest with ALREADY_EXISTS naming the holder once the result was delivered', async () => {
    await h.restart();
    const { containerId } = await h.call<{ containerId: string }>('createContainer', createRequest('delivered', 'v1'));
    const error = (await h
      .call('createContainer', createRequest('delivered', 'v2'))
      .catch((e: ServiceError) => e)) as ServiceError;
    assert.equal(error.code, Status.ALREADY_EXISTS);
    assert.match(error.details, new RegExp(`reserved for ${containerId}`));
    assert.deepEqual(await undeliveredNamed(fullName('delivered')), []);
    // A caller that waited costs nothing more: the saga's two batches, and the refusal writes nothing.
    assert.deepEqual(
      (await streamOf(containerId)).map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'],
    );
    assert.deepEqual(await held(), only(containerId));
    await removeAll();
  });

  it('(d) removes a result nobody claims after the configured time', async () => {
    await h.restart(SLOW_CREATE, { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '6s' });
    await callPastDeadline('createContainer', createRequest('unclaimed'));
    await until('the undelivered result', async () => (await undeliveredNamed(fullName('unclaimed'))).length === 1);
    const [undelivered] = await undeliveredNamed(fullName('unclaimed'));
    const id = undelivered!.stream.slice('container-'.length);
    assert.deepEqual(await held(), only(id), 'it exists, waiting for its claim');
    await until('its removal', async () => (await streamOf(id)).at(-1)?.type === 'ContainerRemoved');
    const removed = (await streamOf(id)).at(-1)!;
    const waitedMs = Date.parse(removed.at) - Date.parse(String(undelivered!.data.callerDeadline));
    assert.ok(
      waitedMs >= 6_000 && waitedMs < 12_000,
      `removed ${waitedMs}ms past the caller's deadline, the timeout being 6s`,
    );
    assert.equal(removed.data.discarded?.reason, 'unclaimed');
    assert.deepEqual(await held(), only());
    assert.deepEqual(await listed(), []);
    await verifyClean();
  });

  it('(d) removes it after a restart too: the timer is rebuilt from the log', async () => {
    // A long timeout first, so nothing is removed before the restart.
    await h.restart(SLOW_CREATE, { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '10m' });
    await callPastDeadline('createContainer', createRequest('unclaimed-restart'));
    await until(
      'the undelivered result',
      async () => (await undeliveredNamed(fullName('unclaimed-restart'))).length === 1,
    );
    const id = (await undeliveredNamed(fullName('unclaimed-restart')))[0]!.stream.slice('container-'.length);
    await h.restart(undefined, { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '2s' });
    await until('its removal after the restart', async () => (await streamOf(id)).at(-1)?.type === 'ContainerRemoved');
    assert.equal((await streamOf(id)).at(-1)?.data.discarded?.reason, 'unclaimed');
    assert.deepEqual(await held(), only());
    await verifyClean();
  });

  it('(e) rolls forward a CreateContainer killed after the record and snapshot exist', async () => {
    await h.restart('CreateContainer.ContainerCreated=crash');
    const request = createRequest('rolled-forward');
    const error = (await h.call('createContainer', request).catch((e: ServiceError) => e)) as ServiceError;
    assert.ok(error instanceof Error, 'the call fails: the service died');
    // An orphan beside it: reconciliation must still run at this start, after the roll forward.
    const orphan = 'e'.repeat(64);
    const image = await unaryCall<{ image: { name: string } }>(h.api.images, 'Get', {
      name: 'docker.io/library/busybox:latest',
    });
    const spec = {
      type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
      value: Buffer.from('{"ociVersion":"1.0.2"}'),
    };
    await unaryCall(h.api.containers, 'Create', {
      container: {
        id: orphan,
        labels: { 'io.cri-ledger.kind': 'container' },
        image: image.image.name,
        runtime: { name: 'io.containerd.runc.v2' },
        spec,
        snapshotter: 'overlayfs',
        snapshot_key: orphan,
      },
    });
    await h.restart();
    await until('recovery to end the saga', async () => (await listed()).length === 1);
    await until('the orphan to be reconciled away', async () => !(await held()).containers.includes(orphan));
    const [container] = await listed();
    assert.equal(container!.metadata.name, 'rolled-forward');
    const types = (await streamOf(container!.id)).map((e) => e.type);
    assert.deepEqual(types, [
      'NameReserved',
      'SpecGenerated',
      'RecoveryDecided',
      'SnapshotPrepared',
      'ContainerCreated',
      'ResultUndelivered',
    ]);
    const decided = (await streamOf(container!.id)).find((e) => e.type === 'RecoveryDecided')!;
    assert.equal(decided.data.decision, 'rollForward');
    await verifyClean();
    // kubelet's retry of the same request claims it, and it runs.
    assert.equal((await h.call<{ containerId: string }>('createContainer', request)).containerId, container!.id);
    await h.call('startContainer', { containerId: container!.id });
    const { status } = await h.call<{ status: { state: string } }>('containerStatus', { containerId: container!.id });
    assert.equal(status.state, 'CONTAINER_RUNNING');
    await verifyClean();
    await removeAll();
  });
});
