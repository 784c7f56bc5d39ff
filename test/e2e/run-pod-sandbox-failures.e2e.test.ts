import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { mountsUnder } from '../support/containerd.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * RunPodSandbox failing at each step on real containerd and a real CNI bridge: after
 * each, no containerd container or snapshot, netns, veth, IP lease, pod file or mount
 * is left, and the pod name is free for a retry.
 */

const STEPS = [
  'SandboxReserved',
  'SpecGenerated',
  'PodFiles',
  'NetworkNamespace',
  'NetworkSetUp',
  'PauseCreated',
  'SnapshotPrepared',
  'SandboxReady',
];

describe('RunPodSandbox failures on real containerd and CNI leave nothing behind', () => {
  let h: CriHarness;
  const podConfig = { metadata: { name: 'pf', uid: 'uid-pf', namespace: 'default', attempt: 0 } };

  before(async () => {
    h = await startCriHarness({ network: true, prefix: 'cri-ledger-e2e-podfail-' });
  });
  after(() => h?.cleanup());

  const leftovers = async () => ({
    containers: (await unaryCall<{ containers: unknown[] }>(h.api.containers, 'List', {})).containers.length,
    snapshots: (
      await collectStream<{ info: Array<{ kind: string }> }>(h.api.snapshots, 'List', { snapshotter: 'overlayfs' })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE').length,
    netns: (await readdir(join(h.root, 'state', 'netns')).catch(() => [])).length,
    leases: (await readdir(h.ipamDir).catch(() => [])).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).length,
    veths: h.bridgePorts().trim().length,
    podFiles: (await readdir(join(h.root, 'sandboxes')).catch(() => [])).length,
    mounts: mountsUnder(h.root).filter((m) => !m.includes('/netns')).length,
  });
  const NOTHING = { containers: 0, snapshots: 0, netns: 0, leases: 0, veths: 0, podFiles: 0, mounts: 0 };

  for (const step of STEPS) {
    it(`compensates a failure at ${step}`, async () => {
      await h.restart(`RunPodSandbox.${step}=error`);
      const error = (await h
        .call('runPodSandbox', { config: podConfig })
        .catch((e: ServiceError) => e)) as ServiceError;
      assert.match(error.details ?? '', new RegExp(`failpoint RunPodSandbox\\.${step} fired`));
      assert.deepEqual(await leftovers(), NOTHING);
    });
  }

  it('frees the name after every failure: a retry succeeds and removal leaves nothing', async () => {
    await h.restart();
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig });
    const status = await h.call<{ status: { state: string } }>('podSandboxStatus', { podSandboxId });
    assert.equal(status.status.state, 'SANDBOX_READY');
    await h.call('removePodSandbox', { podSandboxId });
    assert.deepEqual(await leftovers(), NOTHING);
  });
});
