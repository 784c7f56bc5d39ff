import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import type { ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * A pod and a container, end to end: gRPC client -> the service's socket -> a private
 * containerd -> runc. The pod uses the host network here (CNI is covered by
 * test/int/cni.int.test.ts); its pause task really runs.
 */

describe('RunPodSandbox and CreateContainer over the CRI socket, on a private containerd', () => {
  let h: CriHarness;
  let api: ContainerdApi;
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-pod-' });
    api = h.api;
  });
  after(() => h?.cleanup());

  const podConfig = {
    metadata: { name: 'web', uid: 'uid-web', namespace: 'default', attempt: 0 },
    hostname: 'web-0',
    logDirectory: '/var/log/pods/default_web_uid-web',
    labels: { app: 'web' },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  let podId = '';
  let containerId = '';

  it('runs a host-network pod: the pause task runs and the pod is READY', async () => {
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
    assert.match(podId, /^[0-9a-f]{64}$/);
    const status = await call<{
      status: { state: string; metadata: { name: string }; linux: { namespaces: { options: Record<string, string> } } };
    }>('podSandboxStatus', { podSandboxId: podId });
    assert.equal(status.status.state, 'SANDBOX_READY');
    assert.deepEqual(status.status.linux.namespaces.options, {
      network: 'NODE',
      pid: 'CONTAINER',
      ipc: 'POD',
      targetId: '',
      usernsOptions: null,
    });
    assert.equal(status.status.metadata.name, 'web');
    const task = await unaryCall<{ process: { status: string; pid: number } }>(api.tasks, 'Get', {
      container_id: podId,
    });
    assert.equal(task.process.status, 'RUNNING');
    const list = await call<{ items: Array<{ id: string }> }>('listPodSandbox', {
      filter: { labelSelector: { app: 'web' } },
    });
    assert.deepEqual(
      list.items.map((i) => i.id),
      [podId],
    );
  });

  it('creates a container in the pod: containerd holds it with the spec cri-ledger built', async () => {
    containerId = (
      await call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: podConfig,
        config: {
          metadata: { name: 'app', attempt: 0 },
          image: { image: 'busybox' },
          command: ['sh', '-c'],
          args: ['echo hello'],
          envs: [{ key: 'MODE', value: 'e2e' }],
          logPath: 'app/0.log',
          labels: { tier: 'front' },
          linux: {
            securityContext: {
              runAsUser: { value: '1000' },
              capabilities: { dropCapabilities: ['NET_RAW'] },
              seccomp: { profileType: 'RuntimeDefault' },
            },
            resources: {
              cpuShares: '512',
              cpuQuota: '50000',
              cpuPeriod: '100000',
              memoryLimitInBytes: '67108864',
              oomScoreAdj: '-500',
            },
          },
        },
      })
    ).containerId;
    const record = await unaryCall<{
      container: {
        spec: { value: Buffer };
        snapshot_key: string;
        runtime: { name: string };
        labels: Record<string, string>;
      };
    }>(api.containers, 'Get', { id: containerId });
    const spec = JSON.parse(Buffer.from(record.container.spec.value).toString('utf8'));
    assert.deepEqual(spec.process.args, ['sh', '-c', 'echo hello']);
    assert.ok(spec.process.env.includes('MODE=e2e'));
    assert.equal(spec.process.user.uid, 1000);
    assert.ok(!spec.process.capabilities.bounding.includes('CAP_NET_RAW'));
    // The image's /etc/group puts `app` (uid 1000, gid 1000) in `extra` (2000) too.
    assert.equal(spec.process.user.gid, 1000);
    assert.ok(spec.process.user.additionalGids.includes(2000), JSON.stringify(spec.process.user));
    assert.equal(spec.linux.seccomp.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(spec.linux.resources.cpu.shares, 512);
    assert.equal(spec.linux.resources.cpu.quota, 50000);
    assert.equal(spec.linux.resources.memory.limit, 67108864);
    // -500 cannot be set without CAP_SYS_RESOURCE: clamped to the service's own value.
    assert.ok(spec.process.oomScoreAdj >= 0, `oomScoreAdj ${spec.process.oomScoreAdj}`);
    assert.ok(
      spec.linux.namespaces.some(
        (n: { type: string; path?: string }) => n.type === 'ipc' && n.path?.includes('/ns/ipc'),
      ),
    );
    assert.ok(spec.mounts.some((m: { destination: string }) => m.destination === '/etc/resolv.conf'));
    assert.equal(record.container.snapshot_key, containerId);
    assert.equal(record.container.runtime.name, 'io.containerd.runc.v2');
    assert.equal(record.container.labels.tier, 'front');
  });

  it('lists the container as CREATED and reports its status', async () => {
    const list = await call<{ containers: Array<{ id: string; state: string }> }>('listContainers', {
      filter: { podSandboxId: podId },
    });
    assert.deepEqual(
      list.containers.map((c) => [c.id, c.state]),
      [[containerId, 'CONTAINER_CREATED']],
    );
    const status = await call<{ status: { state: string; logPath: string; metadata: { name: string } } }>(
      'containerStatus',
      { containerId: containerId.slice(0, 12) },
    );
    assert.equal(status.status.state, 'CONTAINER_CREATED');
    assert.equal(status.status.logPath, '/var/log/pods/default_web_uid-web/app/0.log');
  });

  it('records each step, and timeline shows them', async () => {
    const result = await runCli(['timeline', `app_web_default_uid-web_0`, '--socket', h.socket]);
    assert.equal(result.code, 0, result.stderr);
    for (const type of ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'])
      assert.match(result.stdout, new RegExp(type));
  });

  it('refuses a second container with the same name, naming the holder', async () => {
    const error = await call('createContainer', {
      podSandboxId: podId,
      sandboxConfig: podConfig,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' } },
    }).catch((e: ServiceError) => e);
    assert.equal((error as ServiceError).code, 6 /* ALREADY_EXISTS */);
    assert.match((error as ServiceError).details, new RegExp(containerId));
  });

  it('stops the pod: the pause task is gone and the pod is NOTREADY; stopping again is fine', async () => {
    await call('stopPodSandbox', { podSandboxId: podId });
    await call('stopPodSandbox', { podSandboxId: podId });
    const status = await call<{ status: { state: string } }>('podSandboxStatus', { podSandboxId: podId });
    assert.equal(status.status.state, 'SANDBOX_NOTREADY');
    await assert.rejects(unaryCall(api.tasks, 'Get', { container_id: podId }), /NOT_FOUND/);
  });

  it('removes the pod with its container: containerd holds neither, and their names are free', async () => {
    await call('removePodSandbox', { podSandboxId: podId });
    await call('removePodSandbox', { podSandboxId: podId });
    assert.deepEqual((await call<{ containers: unknown[] }>('listContainers', {})).containers, []);
    assert.deepEqual((await call<{ items: unknown[] }>('listPodSandbox', {})).items, []);
    const records = await unaryCall<{ containers: Array<{ id: string }> }>(api.containers, 'List', {});
    assert.deepEqual(
      records.containers.map((c) => c.id),
      [],
    );
    const again = await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig });
    assert.notEqual(again.podSandboxId, podId, 'the pod name is free for a new sandbox');
    await call('removePodSandbox', { podSandboxId: again.podSandboxId });
  });
});
