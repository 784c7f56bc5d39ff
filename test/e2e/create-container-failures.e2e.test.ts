import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, makeGenericClientConstructor, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { startServe, tempRoot, type ServeProcess } from '../support/cli.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../support/oci-image.js';

/*
 * CreateContainer failing at each step on real containerd (CRI_LEDGER_FAILPOINTS), and
 * bad input refused before any event: after each, containerd holds no container or
 * snapshot of it, no directory is left, and the name is free for a retry.
 */

type Call = (request: object, callback: (error: ServiceError | null, response: Record<string, unknown>) => void) => void;
const NAMESPACE = 'cri-ledger';
const STEPS = ['NameReserved', 'Directories', 'SpecGenerated', 'SnapshotPrepared', 'IoPrepared', 'ContainerCreated'];

describe('CreateContainer failures on real containerd leave nothing behind', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let containerd: PrivateContainerd;
  let api: ContainerdApi;
  let serve: ServeProcess | undefined;
  let cri: (Client & Record<string, Call>) | undefined;
  let podId = '';
  const socket = () => join(root.dir, 'cri.sock');

  const start = async (failpoints?: string) => {
    cri?.close();
    await serve?.stop();
    serve = await startServe({
      root: root.dir,
      socket: socket(),
      args: ['--containerd-address', containerd.address, '--cni-conf-dir', join(root.dir, 'cni'), '--restrict-oom-score-adj', 'true'],
      env: { ...process.env, ...(failpoints ? { CRI_LEDGER_FAILPOINTS: failpoints } : {}) },
    });
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    cri = new Constructor(`unix://${socket()}`, credentials.createInsecure()) as Client & Record<string, Call>;
  };
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> =>
    new Promise((resolve, reject) => cri![method]!.call(cri, request, (error, response) => (error ? reject(error) : resolve(response as T))));
  const head = async () => {
    const client = LedgerClient.connect(socket());
    try {
      return (await client.status()).head;
    } finally {
      client.close();
    }
  };

  const podConfig = { metadata: { name: 'fail', uid: 'uid-fail', namespace: 'default', attempt: 0 }, linux: { securityContext: { namespaceOptions: { network: 'NODE' } } } };
  const create = (config: object = {}) =>
    call<{ containerId: string }>('createContainer', { podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, ...config } });

  /** What of a container could be left: containerd records and active snapshots besides the pod's, and dirs. */
  const leftovers = async () => {
    const containers = (await unaryCall<{ containers: Array<{ id: string }> }>(api.containers, 'List', {})).containers.map((c) => c.id).filter((id) => id !== podId);
    const snapshots = (await collectStream<{ info: Array<{ name: string; kind: string }> }>(api.snapshots, 'List', { snapshotter: 'overlayfs' }))
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE' && i.name !== podId)
      .map((i) => i.name);
    const dirs = await readdir(join(root.dir, 'containers')).catch(() => []);
    return { containers, snapshots, dirs };
  };

  before(async () => {
    root = await tempRoot('cri-ledger-e2e-fail-');
    await mkdir(join(root.dir, 'cni'));
    containerd = await startContainerd();
    for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) await importTestImage(containerd.address, NAMESPACE, await buildTestImage(spec, join(root.dir, 'images')));
    api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
    await start();
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
  });

  after(async () => {
    cri?.close();
    api?.close();
    await serve?.stop('SIGKILL');
    await containerd?.stop();
    for (const mount of root ? mountsUnder(root.dir) : []) execFileSync('umount', ['-l', mount]);
    await root?.cleanup();
  });

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

  it('refuses bad input before any event is written', async () => {
    const before = await head();
    const cases: Array<[object, number, RegExp]> = [
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: null }, Status.INVALID_ARGUMENT, /config/],
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: { image: { image: 'busybox' } } }, Status.INVALID_ARGUMENT, /config\.metadata/],
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: '' } } }, Status.INVALID_ARGUMENT, /config\.image\.image/],
      [{ podSandboxId: 'f'.repeat(64), sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: 'busybox' } } }, Status.NOT_FOUND, /sandbox/],
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: 'busybox' }, linux: { securityContext: { runAsGroup: { value: '5' } } } } }, Status.INVALID_ARGUMENT, /run_as_group/],
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: 'busybox' }, linux: { securityContext: { seccomp: { profileType: 'Localhost', localhostRef: 'x' }, seccompProfilePath: 'weird/x' } } } }, Status.INVALID_ARGUMENT, /seccomp/],
      [{ podSandboxId: podId, sandboxConfig: { ...podConfig, logDirectory: '/var/log/pods/x' }, config: { metadata: { name: 'x' }, image: { image: 'busybox' }, logPath: '../../../etc/shadow' } }, Status.INVALID_ARGUMENT, /log_path/],
      [{ podSandboxId: podId, sandboxConfig: podConfig, config: { metadata: { name: 'x' }, image: { image: 'busybox' }, labels: { big: 'x'.repeat(20 * 1024 * 1024) } } }, Status.RESOURCE_EXHAUSTED, /.*/],
    ];
    for (const [request, code, message] of cases) {
      const error = (await call('createContainer', request).catch((e: ServiceError) => e)) as ServiceError;
      assert.equal(error.code, code, `${JSON.stringify(request).slice(0, 200)}: ${error.details}`);
      assert.match(error.details ?? '', message);
    }
    assert.equal(await head(), before, 'no event was written');
    assert.deepEqual(await leftovers(), { containers: [], snapshots: [], dirs: [] });
  });

  it('lets exactly one of 16 concurrent CreateContainer calls with one name win; the rest get ALREADY_EXISTS', async () => {
    const results = await Promise.allSettled(Array.from({ length: 16 }, () => create({ metadata: { name: 'race', attempt: 0 } })));
    const won = results.filter((r): r is PromiseFulfilledResult<{ containerId: string }> => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as ServiceError).code, Status.ALREADY_EXISTS, (r.reason as ServiceError).details);
    }
    const ids = (await unaryCall<{ containers: Array<{ id: string }> }>(api.containers, 'List', {})).containers.map((c) => c.id).filter((id) => id !== podId);
    assert.deepEqual(ids, [won[0]!.value.containerId]);
  });
});

