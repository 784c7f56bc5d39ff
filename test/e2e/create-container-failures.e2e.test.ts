import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * CreateContainer failing at each step on real containerd (CRI_LEDGER_FAILPOINTS), and
 * bad input refused before any event: after each, containerd holds no container or
 * snapshot of it, no directory is left, and the name is free for a retry.
 */

const STEPS = [
  'NameReserved',
  'SpecGenerated',
  'HostPaths',
  'Directories',
  'IoPrepared',
  'ContainerRecord',
  'SnapshotPrepared',
  'ContainerCreated',
];

/** Polls until `check` holds (the containerd record exists, say); fails after 20 s. */
async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('CreateContainer failures on real containerd leave nothing behind', () => {
  let h: CriHarness;
  let podId = '';
  const start = (failpoints?: string) => h.restart(failpoints);
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const head = (): Promise<number> => ledgerHead(h.socket);

  const podConfig = {
    metadata: { name: 'fail', uid: 'uid-fail', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const create = (config: object = {}) =>
    call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: podConfig,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, ...config },
    });

  /** What of a container could be left: containerd records and active snapshots besides the pod's, and dirs. */
  const leftovers = async () => {
    const containers = (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .filter((id) => id !== podId);
    const snapshots = (
      await collectStream<{ info: Array<{ name: string; kind: string }> }>(h.api.snapshots, 'List', {
        snapshotter: 'overlayfs',
      })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE' && i.name !== podId)
      .map((i) => i.name);
    const dirs = await readdir(join(h.root, 'containers')).catch(() => []);
    return { containers, snapshots, dirs };
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-fail-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
  });
  after(() => h?.cleanup());

  for (const step of STEPS) {
    it(`compensates a failure at ${step}`, async () => {
      await start(`CreateContainer.${step}=error`);
      const error = (await create().catch((e: ServiceError) => e)) as ServiceError;
      assert.match(error.details ?? '', new RegExp(`failpoint CreateContainer\\.${step} fired`));
      assert.deepEqual(await leftovers(), { containers: [], snapshots: [], dirs: [] });
    });
  }

  it('frees the name after every failure: a retry succeeds', async () => {
    await start();
    const { containerId } = await create();
    assert.match(containerId, /^[0-9a-f]{64}$/);
    await call('removePodSandbox', { podSandboxId: podId });
    assert.deepEqual(await leftovers(), { containers: [], snapshots: [], dirs: [] });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
  });

  it('lets a CreateContainer in flight finish when the service gets SIGTERM, then exits cleanly', async () => {
    // The snapshot step is held for 1.5 s; SIGTERM arrives while it waits.
    await start('CreateContainer.SnapshotPrepared=delay(1500)');
    const pending = create({ metadata: { name: 'inflight', attempt: 0 } });
    await until(async () => (await leftovers()).containers.length > 0);
    const exit = h.serve().stop('SIGTERM');
    const { containerId } = await pending;
    assert.deepEqual(await exit, { code: 0, signal: null });
    await start();
    const status = await call<{ status: { state: string } }>('containerStatus', { containerId });
    assert.equal(status.status.state, 'CONTAINER_CREATED');
    await call('removeContainer', { containerId });
  });

  it('refuses bad input before any event is written', async () => {
    const before = await head();
    const cases: Array<[object, number, RegExp]> = [
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: null }, Status.INVALID_ARGUMENT, /config/],
      [
        { podSandboxId: podId, sandboxConfig: podConfig, config: { image: { image: 'busybox' } } },
        Status.INVALID_ARGUMENT,
        /config\.metadata/,
      ],
      [
        { podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: '' } } },
        Status.INVALID_ARGUMENT,
        /config\.image\.image/,
      ],
      [
        {
          podSandboxId: 'f'.repeat(64),
          sandboxConfig: podConfig,
          config: { metadata: { name: 'x' }, image: { image: 'busybox' } },
        },
        Status.NOT_FOUND,
        /sandbox/,
      ],
      [
        {
          podSandboxId: podId,
          sandboxConfig: podConfig,
          config: {
            metadata: { name: 'x' },
            image: { image: 'busybox' },
            linux: { securityContext: { runAsGroup: { value: '5' } } },
          },
        },
        Status.INVALID_ARGUMENT,
        /run_as_group/,
      ],
      [
        {
          podSandboxId: podId,
          sandboxConfig: podConfig,
          config: {
            metadata: { name: 'x' },
            image: { image: 'busybox' },
            linux: {
              securityContext: {
                seccomp: { profileType: 'Localhost', localhostRef: 'x' },
                seccompProfilePath: 'weird/x',
              },
            },
          },
        },
        Status.INVALID_ARGUMENT,
        /seccomp/,
      ],
      [
        {
          podSandboxId: podId,
          sandboxConfig: { ...podConfig, logDirectory: '/var/log/pods/x' },
          config: { metadata: { name: 'x' }, image: { image: 'busybox' }, logPath: '../../../etc/shadow' },
        },
        Status.INVALID_ARGUMENT,
        /log_path/,
      ],
      [
        {
          podSandboxId: podId,
          sandboxConfig: podConfig,
          config: {
            metadata: { name: 'x' },
            image: { image: 'busybox' },
            labels: { big: 'x'.repeat(20 * 1024 * 1024) },
          },
        },
        Status.RESOURCE_EXHAUSTED,
        /.*/,
      ],
    ];
    for (const [request, code, message] of cases) {
      const error = (await call('createContainer', request).catch((e: ServiceError) => e)) as ServiceError;
      assert.equal(error.code, code, `${JSON.stringify(request).slice(0, 200)}: ${error.details}`);
      assert.match(error.details ?? '', message);
    }
    assert.equal(await head(), before, 'no event was written');
    assert.deepEqual(await leftovers(), { containers: [], snapshots: [], dirs: [] });
  });

  it('creates one container for 16 concurrent calls with one name: the same request gets its id, another ALREADY_EXISTS', async () => {
    // Even calls are one request (a kubelet retry sends the same one); odd ones differ in their labels.
    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) =>
        create({ metadata: { name: 'race', attempt: 0 }, ...(i % 2 === 1 ? { labels: { call: String(i) } } : {}) }),
      ),
    );
    const won = results.filter((r): r is PromiseFulfilledResult<{ containerId: string }> => r.status === 'fulfilled');
    assert.equal(new Set(won.map((r) => r.value.containerId)).size, 1);
    for (const r of results) {
      if (r.status === 'rejected')
        assert.equal((r.reason as ServiceError).code, Status.ALREADY_EXISTS, (r.reason as ServiceError).details);
    }
    const ids = (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .filter((id) => id !== podId);
    assert.deepEqual(ids, [won[0]!.value.containerId]);
    // Once created, a retry of the winning request is answered with its id, and recorded.
    const winner = results.findIndex((r) => r.status === 'fulfilled');
    const again = await create({
      metadata: { name: 'race', attempt: 0 },
      ...(winner % 2 === 1 ? { labels: { call: String(winner) } } : {}),
    });
    assert.equal(again.containerId, won[0]!.value.containerId);
  });
});
