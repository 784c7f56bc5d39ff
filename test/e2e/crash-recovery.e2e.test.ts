import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { until } from '../support/until.js';

/*
 * The crash sweep: for every step of CreateContainer and RunPodSandbox, the service is
 * killed there (`<Operation>.<Step>=crash`, as SIGKILL would), then started again
 * without the failpoint. Startup recovery must compensate the saga: nothing of it is
 * left in containerd or on disk, the name is free (kubelet's retry of the same name
 * succeeds at once), and `verify` finds the log clean. A CreateContainer killed once
 * containerd holds its record and snapshot is rolled forward instead: the container
 * exists, and the retry of the same request is served its id.
 */

const CREATE_STEPS = [
  'NameReserved',
  'SpecGenerated',
  'HostPaths',
  'Directories',
  'IoPrepared',
  'ContainerRecord',
  'SnapshotPrepared',
  'ContainerCreated',
];
/** Killed here, containerd already holds the record and the snapshot: recovery rolls forward. */
const ROLLED_FORWARD = new Set(['SnapshotPrepared', 'ContainerCreated']);
const POD_STEPS = ['SandboxReserved', 'SpecGenerated', 'PodFiles', 'PauseCreated', 'SnapshotPrepared', 'SandboxReady'];

describe('crash recovery: a saga cut short by a crash is undone at the next start', () => {
  let h: CriHarness;
  let podId = '';
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const podConfig = (name: string) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  });
  const base = podConfig('crash-base');
  const inFlight = async () => {
    const r = await runCli(['status', '--socket', h.socket, '--json']);
    return (JSON.parse(r.stdout) as { counts: { operationsInFlight: number } }).counts.operationsInFlight;
  };
  /** containerd records and active snapshots other than the base pod's, and container dirs. */
  const leftovers = async () => ({
    containers: (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .filter((id) => id !== podId),
    snapshots: (
      await collectStream<{ info: Array<{ name: string; kind: string }> }>(h.api.snapshots, 'List', {
        snapshotter: 'overlayfs',
      })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE' && i.name !== podId)
      .map((i) => i.name),
    containerDirs: await readdir(join(h.root, 'containers')).catch((): string[] => []),
    podDirs: (await readdir(join(h.root, 'sandboxes')).catch((): string[] => [])).filter((d) => d !== podId),
  });
  const NOTHING = { containers: [], snapshots: [], containerDirs: [], podDirs: [] };
  const verifyAgainstContainerd = () =>
    runCli(['verify', '--against-containerd', '--socket', h.socket, '--containerd-address', h.containerd.address]);

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-crash-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: base })).podSandboxId;
  });
  after(() => h?.cleanup());

  for (const step of CREATE_STEPS) {
    const forward = ROLLED_FORWARD.has(step);
    it(`CreateContainer killed at ${step}: ${forward ? 'rolled forward' : 'compensated'} at restart, and the same request succeeds`, async () => {
      await h.restart(`CreateContainer.${step}=crash`);
      const request = {
        podSandboxId: podId,
        sandboxConfig: base,
        config: {
          metadata: { name: `c-${step.toLowerCase()}`, attempt: 0 },
          image: { image: 'busybox' },
          command: ['sleep', '3600'],
        },
      };
      const error = (await call('createContainer', request).catch((e: ServiceError) => e)) as ServiceError;
      assert.ok(error instanceof Error, 'the call fails: the service died');
      await h.restart();
      await until('recovery to end every saga', async () => (await inFlight()) === 0);
      const listed = (await call<{ containers: Array<{ id: string }> }>('listContainers', {})).containers.map(
        (c) => c.id,
      );
      if (forward) {
        assert.equal(listed.length, 1, 'the rolled-forward container is listed');
        assert.deepEqual(await leftovers(), {
          containers: listed,
          snapshots: listed,
          containerDirs: listed,
          podDirs: [],
        });
      } else {
        assert.deepEqual(listed, []);
        assert.deepEqual(await leftovers(), NOTHING);
      }
      const { containerId } = await call<{ containerId: string }>('createContainer', request);
      if (forward) assert.equal(containerId, listed[0], 'the retry is served the rolled-forward id');
      await call('removeContainer', { containerId });
      assert.deepEqual(await leftovers(), NOTHING);
      assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0);
      assert.equal((await verifyAgainstContainerd()).code, 0);
    });
  }

  for (const step of POD_STEPS) {
    it(`RunPodSandbox killed at ${step}: compensated at restart, and the same pod can be run`, async () => {
      await h.restart(`RunPodSandbox.${step}=crash`);
      const config = podConfig(`p-${step.toLowerCase()}`);
      const error = (await call('runPodSandbox', { config }).catch((e: ServiceError) => e)) as ServiceError;
      assert.ok(error instanceof Error, 'the call fails: the service died');
      await h.restart();
      await until('recovery to end every saga', async () => (await inFlight()) === 0);
      assert.deepEqual(await leftovers(), NOTHING);
      const { podSandboxId } = await call<{ podSandboxId: string }>('runPodSandbox', { config });
      await call('removePodSandbox', { podSandboxId });
      assert.deepEqual(await leftovers(), NOTHING);
      assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0);
      assert.equal((await verifyAgainstContainerd()).code, 0);
    });
  }

  it('removes at startup what containerd holds with its labels but the log never heard of, and records it', async () => {
    const orphan = 'f'.repeat(64);
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
    const before = await verifyAgainstContainerd();
    assert.equal(before.code, 3, before.stdout);
    assert.match(before.stdout, new RegExp(`in containerd only\\s+container\\s+${orphan}`));
    await h.restart();
    await until('the orphan to be removed', async () => (await leftovers()).containers.length === 0);
    const events = await runCli(['events', '--socket', h.socket, '--type', 'RuntimeReconciled', '--json']);
    const last = JSON.parse(events.stdout.trim().split('\n').at(-1)!) as {
      data: { orphansRemoved: Array<{ id: string; ok: boolean }> };
    };
    assert.deepEqual(last.data.orphansRemoved, [{ kind: 'container', id: orphan, ok: true }]);
    assert.equal((await verifyAgainstContainerd()).code, 0);
  });

  it('reports what the log has that containerd lacks', async () => {
    const request = {
      podSandboxId: podId,
      sandboxConfig: base,
      config: { metadata: { name: 'vanishing', attempt: 0 }, image: { image: 'busybox' } },
    };
    const { containerId } = await call<{ containerId: string }>('createContainer', request);
    await unaryCall(h.api.containers, 'Delete', { id: containerId });
    const r = await verifyAgainstContainerd();
    assert.equal(r.code, 3);
    assert.match(r.stdout, new RegExp(`in the log only\\s+container \\(CREATED\\)\\s+${containerId}`));
    // The next start's reconciliation records it, and ContainerStatus says so.
    await h.restart();
    const status = () =>
      call<{ status: { message: string }; info: { info: string } }>('containerStatus', { containerId, verbose: true });
    await until('reconciliation to mark the container', async () =>
      (await status()).status.message.startsWith('containerd no longer holds this container'),
    );
    assert.match(
      (JSON.parse((await status()).info.info) as { missingInRuntimeSince?: string }).missingInRuntimeSince ?? '',
      /^\d{4}-\d\d-\d\dT/,
    );
    await call('removeContainer', { containerId });
    assert.equal((await verifyAgainstContainerd()).code, 0);
  });
});
