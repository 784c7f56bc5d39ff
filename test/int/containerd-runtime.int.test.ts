import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import type { ResolvedImage, RuntimeContainer } from '../../src/commands/ports.js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, ContainerdCallError, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ContainerdImageStore } from '../../src/adapters/containerd/containerd-images.js';
import { readFromImageView, VIEW_PREFIX } from '../../src/adapters/containerd/containerd-image-view.js';
import {
  ContainerdRuntime,
  METADATA_EXTENSION,
  METADATA_TYPE_URL,
} from '../../src/adapters/containerd/containerd-runtime.js';
import { parseJsonAny, type WireAny } from '../../src/adapters/containerd/containerd-wire.js';
import { RuntimeUnavailableError } from '../../src/domain/errors.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE, type BuiltImage } from '../support/oci-image.js';

const NAMESPACE = 'cri-ledger-runtime-test';
const SNAPSHOTTER = 'overlayfs';

let containerd: PrivateContainerd;
let api: ContainerdApi;
let images: ContainerdImageStore;
let runtime: ContainerdRuntime;
let imageDir: string;
let busybox: BuiltImage;
let pause: BuiltImage;

before(async () => {
  imageDir = await mkdtemp(join(tmpdir(), 'cri-ledger-runtime-images-'));
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  busybox = await buildTestImage(BUSYBOX_IMAGE, imageDir);
  pause = await buildTestImage(PAUSE_IMAGE, imageDir);
  await importTestImage(containerd.address, NAMESPACE, busybox);
  await importTestImage(containerd.address, NAMESPACE, pause);
  images = new ContainerdImageStore({ api });
  runtime = new ContainerdRuntime({ api });
});

after(async () => {
  api?.close();
  await rm(imageDir, { recursive: true, force: true });
  if (!containerd) return;
  const dir = dirname(containerd.address);
  await containerd.stop();
  assert.equal(existsSync(dir), false, `${dir} is left behind`);
  assert.deepEqual(mountsUnder(dir), []);
});

interface SnapshotInfo {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

async function snapshots(): Promise<SnapshotInfo[]> {
  const pages = await collectStream<{ info: SnapshotInfo[] }>(api.snapshots, 'List', {
    snapshotter: SNAPSHOTTER,
    filters: [],
  });
  return pages.flatMap((p) => p.info);
}

async function leaseIds(): Promise<string[]> {
  const { leases } = await unaryCall<{ leases: Array<{ id: string }> }>(api.leases, 'List', { filters: [] });
  return leases.map((l) => l.id);
}

async function containerIds(): Promise<string[]> {
  const { containers } = await unaryCall<{ containers: Array<{ id: string }> }>(api.containers, 'List', {
    filters: [],
  });
  return containers.map((c) => c.id);
}

/** Runs containerd's garbage collector to completion (a synchronous lease delete waits for it). */
async function collectGarbage(): Promise<void> {
  const id = `cri-ledger-test-gc-${Date.now()}`;
  await unaryCall(api.leases, 'Create', { id, labels: {} });
  await unaryCall(api.leases, 'Delete', { id, sync: true });
}

const viewMounts = (): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes(VIEW_PREFIX));
const viewDirs = (): string[] => readdirSync(tmpdir()).filter((name) => name.startsWith(VIEW_PREFIX));

function container(
  id: string,
  image: ResolvedImage,
  spec: Record<string, unknown> = {
    ociVersion: '1.1.0',
    process: { args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
  },
): RuntimeContainer {
  return {
    id,
    spec,
    image,
    snapshot: { snapshotter: image.snapshotter, key: id, parent: image.chainId },
    runtime: 'io.containerd.runc.v2',
    labels: { 'io.cri-ledger/kind': 'container' },
    extension: { sandboxId: 'sb-1', name: 'web', attempt: 0 },
  };
}

describe('ContainerdImageStore.resolve', () => {
  const ref = 'docker.io/library/busybox:latest';

  it('finds busybox by short name, full reference, id, id hex, id prefix and repo digest', async () => {
    const byName = await images.resolve('busybox');
    assert.ok(byName);
    assert.equal(byName.id, busybox.configDigest);
    assert.equal(byName.name, ref);
    assert.deepEqual(byName.repoTags, [ref]);
    assert.deepEqual(byName.repoDigests, [`docker.io/library/busybox@${busybox.manifestDigest}`]);
    // One layer: the chain id is its diff id, the committed snapshot the import unpacked.
    assert.equal(byName.chainId, busybox.layerDiffId);
    assert.equal(byName.snapshotter, SNAPSHOTTER);
    assert.deepEqual(byName.config.cmd, ['sh']);
    assert.deepEqual(byName.config.env, BUSYBOX_IMAGE.env);
    assert.equal(byName.config.entrypoint, undefined);
    assert.match(byName.size, /^[1-9][0-9]*$/);
    const hex = busybox.configDigest.slice('sha256:'.length);
    for (const other of [
      'library/busybox',
      'busybox:latest',
      ref,
      busybox.configDigest,
      hex,
      hex.slice(0, 12),
      `busybox@${busybox.manifestDigest}`,
      `busybox:latest@${busybox.manifestDigest}`,
    ]) {
      assert.deepEqual(await images.resolve(other), byName, other);
    }
  });

  it('finds the pause image by its registry reference with its entrypoint', async () => {
    const image = await images.resolve('registry.k8s.io/pause:3.6');
    assert.ok(image);
    assert.equal(image.id, pause.configDigest);
    assert.deepEqual(image.config.entrypoint, PAUSE_IMAGE.entrypoint);
  });

  it('returns undefined for what is not there', async () => {
    const ids = [busybox.configDigest, pause.configDigest].map((id) => id.slice('sha256:'.length));
    const absentPrefix = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'].find(
      (c) => !ids.some((id) => id.startsWith(c)),
    )!;
    for (const ref of [
      'nope',
      'busybox:other',
      'quay.io/library/busybox:latest',
      `sha256:${absentPrefix.repeat(64)}`,
      absentPrefix.repeat(6),
      `busybox@sha256:${'0'.repeat(64)}`,
      'Not A Ref',
    ]) {
      assert.equal(await images.resolve(ref), undefined, ref);
    }
  });

  it('lists every tag and digest of records that point at the same image', async () => {
    const alias = 'docker.io/library/busybox:alias';
    const { image } = await unaryCall<{ image: { target: unknown } }>(api.images, 'Get', { name: ref });
    await unaryCall(api.images, 'Create', { image: { name: alias, labels: {}, target: image.target } });
    // Made behind the store's back (as ctr would): seen once the cached list is forgotten.
    images.invalidate();
    try {
      const resolved = await images.resolve('busybox:alias');
      assert.ok(resolved);
      assert.equal(resolved.name, alias);
      assert.equal(resolved.id, busybox.configDigest);
      assert.deepEqual(resolved.repoTags, [alias, ref]);
      assert.deepEqual(resolved.repoDigests, [`docker.io/library/busybox@${busybox.manifestDigest}`]);
    } finally {
      await unaryCall(api.images, 'Delete', { name: alias, sync: false });
    }
    // A store that reuses nothing sees the removal at once; the cached one after invalidate().
    assert.equal(await new ContainerdImageStore({ api, recordsTtlMs: 0 }).resolve('busybox:alias'), undefined);
    images.invalidate();
    assert.equal(await images.resolve('busybox:alias'), undefined);
    assert.deepEqual((await images.resolve('busybox'))?.repoTags, [ref]);
  });
});

describe('ContainerdImageStore.readUserFiles', () => {
  it('reads /etc/passwd and /etc/group through a view and leaves no view, lease, mount or dir', async () => {
    const dirsBefore = viewDirs();
    const image = await images.resolve('busybox');
    assert.ok(image);
    const files = await images.readUserFiles(image);
    assert.match(files.passwd ?? '', /^app:x:1000:1000:/m);
    assert.match(files.group ?? '', /^extra:x:2000:app$/m);
    assert.deepEqual(
      (await snapshots()).filter((s) => s.name.startsWith(VIEW_PREFIX)),
      [],
    );
    assert.deepEqual(
      (await leaseIds()).filter((id) => id.startsWith('cri-ledger-')),
      [],
    );
    assert.deepEqual(viewMounts(), []);
    assert.deepEqual(viewDirs(), dirsBefore);
    // The image itself is untouched: its committed snapshot is still the only one.
    assert.deepEqual(
      (await snapshots()).map((s) => [s.name, s.kind]),
      [...new Set([busybox.layerDiffId, pause.layerDiffId])].sort().map((name) => [name, 'COMMITTED']),
    );
  });

  it('cleans up when the view cannot be made', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    await assert.rejects(images.readUserFiles({ ...image, chainId: `sha256:${'0'.repeat(64)}` }), ContainerdCallError);
    assert.deepEqual(
      (await snapshots()).filter((s) => s.name.startsWith(VIEW_PREFIX)),
      [],
    );
    assert.deepEqual(
      (await leaseIds()).filter((id) => id.startsWith('cri-ledger-')),
      [],
    );
    assert.deepEqual(viewMounts(), []);
  });
  it('reads through an overlay of several layers and keeps symlinks inside the image', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    // A second layer, written straight into the upper dir: /etc/passwd becomes an
    // absolute symlink that would reach the host's /etc/group if followed outside the root.
    // Made under a lease of the test's: an unreferenced committed snapshot is GC'd.
    const lease = 'test-layer-two';
    await unaryCall(api.leases, 'Create', { id: lease, labels: {} });
    try {
      const { mounts } = await unaryCall<{ mounts: Array<{ options: string[] }> }>(
        api.snapshots,
        'Prepare',
        { snapshotter: SNAPSHOTTER, key: 'layer-two-active', parent: image.chainId, labels: {} },
        { lease },
      );
      const upper = mounts[0]?.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
      assert.ok(upper, 'an overlay mount with an upper dir');
      await mkdir(join(upper, 'etc'), { recursive: true });
      await symlink('/../../etc/group', join(upper, 'etc/passwd'));
      await unaryCall(
        api.snapshots,
        'Commit',
        { snapshotter: SNAPSHOTTER, name: 'layer-two', key: 'layer-two-active', labels: {} },
        { lease },
      );
      const files = await readFromImageView(api, SNAPSHOTTER, 'layer-two', [
        '/etc/passwd',
        '/etc/group',
        '/etc/shadow',
      ]);
      assert.match(files.get('/etc/passwd') ?? '', /^extra:x:2000:app$/m);
      assert.equal(files.get('/etc/passwd'), files.get('/etc/group'));
      assert.equal(files.get('/etc/shadow'), undefined);
      assert.deepEqual(viewMounts(), []);
    } finally {
      await unaryCall(api.leases, 'Delete', { id: lease, sync: true });
    }
    assert.equal(
      (await snapshots()).some((s) => s.name === 'layer-two'),
      false,
    );
  });
});

describe('ContainerdRuntime', () => {
  it('creates the container record, prepares its snapshot, and leaves nothing after delete and remove', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    const id = 'c-lifecycle';
    assert.equal(await runtime.hasContainer(id), false);
    await runtime.createContainer(container(id, image));
    assert.equal(await runtime.hasContainer(id), true);
    const prepared = await runtime.prepareSnapshot(id, image, { 'io.cri-ledger/container': id });
    assert.deepEqual(
      { ...prepared, mounts: undefined },
      { snapshotter: SNAPSHOTTER, key: id, parent: image.chainId, mounts: undefined },
    );
    assert.equal(prepared.mounts.length, 1);
    assert.equal(prepared.mounts[0]!.type, 'overlay');
    const stat = (await snapshots()).find((s) => s.name === id);
    assert.equal(stat?.parent, image.chainId);
    assert.equal(stat?.kind, 'ACTIVE');
    assert.equal(stat?.labels['io.cri-ledger/container'], id);
    assert.deepEqual(
      (await leaseIds()).filter((l) => l.startsWith('cri-ledger-')),
      [],
      'no lease: the record holds the snapshot',
    );
    const { container: stored } = await unaryCall<{
      container: {
        image: string;
        runtime: { name: string };
        snapshot_key: string;
        spec: WireAny;
        extensions: Record<string, WireAny>;
      };
    }>(api.containers, 'Get', { id });
    assert.equal(stored.image, image.name);
    assert.equal(stored.runtime.name, 'io.containerd.runc.v2');
    assert.equal(stored.snapshot_key, id);
    assert.deepEqual(parseJsonAny(stored.spec), container(id, image).spec);
    assert.equal(stored.extensions[METADATA_EXTENSION]?.type_url, METADATA_TYPE_URL);
    assert.deepEqual(parseJsonAny(stored.extensions[METADATA_EXTENSION]!), {
      sandboxId: 'sb-1',
      name: 'web',
      attempt: 0,
    });

    await runtime.deleteContainer(id);
    await runtime.removeSnapshot(id, SNAPSHOTTER);
    assert.equal(await runtime.hasContainer(id), false);
    assert.deepEqual(await containerIds(), []);
    assert.equal(
      (await snapshots()).some((s) => s.name === id),
      false,
    );
    assert.deepEqual(
      (await leaseIds()).filter((l) => l.startsWith('cri-ledger-')),
      [],
    );

    // Every removal succeeds when there is nothing to remove.
    await runtime.deleteContainer(id);
    await runtime.removeSnapshot(id, SNAPSHOTTER);
  });

  it('reads back the stored spec, the metadata extension and the snapshot, for startup recovery', async () => {
    const image = (await images.resolve('busybox'))!;
    const id = 'b'.repeat(63) + '1';
    const c = container(id, image);
    assert.equal(await runtime.storedContainer(id), undefined);
    assert.equal(await runtime.statSnapshot(id, SNAPSHOTTER), undefined);
    await runtime.createContainer(c);
    await runtime.prepareSnapshot(id, image, {});
    try {
      const stored = await runtime.storedContainer(id);
      assert.deepEqual(stored, { spec: c.spec, extension: c.extension, snapshotter: SNAPSHOTTER, snapshotKey: id });
      // Byte for byte: the spec digest SpecGenerated records is the one recovery computes.
      assert.equal(JSON.stringify(stored?.spec), JSON.stringify(c.spec));
      assert.deepEqual(await runtime.statSnapshot(id, SNAPSHOTTER), { parent: image.chainId });
    } finally {
      await runtime.deleteContainer(id);
      await runtime.removeSnapshot(id, SNAPSHOTTER);
    }
    assert.equal(await runtime.storedContainer(id), undefined);
    assert.equal(await runtime.statSnapshot(id, SNAPSHOTTER), undefined);
  });

  it('treats a second prepare and a second create of the same container as success', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    const id = 'c-retry';
    await runtime.createContainer(container(id, image));
    const first = await runtime.prepareSnapshot(id, image, {});
    assert.deepEqual(await runtime.prepareSnapshot(id, image, {}), first);
    // The same spec with its keys in another order (as it comes back from the log).
    await runtime.createContainer(
      container(id, image, { root: { path: 'rootfs' }, process: { cwd: '/', args: ['sh'] }, ociVersion: '1.1.0' }),
    );
    await assert.rejects(
      runtime.createContainer(container(id, image, { ociVersion: '1.1.0', process: { args: ['other'] } })),
      (error: unknown) => {
        assert.ok(error instanceof ContainerdCallError);
        assert.equal(error.code, Status.ALREADY_EXISTS);
        return true;
      },
    );
    await runtime.deleteContainer(id);
    await runtime.removeSnapshot(id, SNAPSHOTTER);
    assert.deepEqual(await containerIds(), []);
    assert.equal(
      (await snapshots()).some((s) => s.name === id),
      false,
    );
  });

  it('refuses a prepare over an existing snapshot with another parent', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    const id = 'c-parent';
    // A record names the snapshot, so the GC (run by other tests' deletions) leaves it.
    await runtime.createContainer(container(id, image));
    // The test images share their one layer, so the other parent is none at all.
    await runtime.prepareSnapshot(id, { ...image, chainId: '' }, {});
    try {
      await assert.rejects(runtime.prepareSnapshot(id, image, {}), (error: unknown) => {
        assert.ok(error instanceof ContainerdCallError);
        assert.equal(error.code, Status.ALREADY_EXISTS);
        return true;
      });
    } finally {
      await runtime.deleteContainer(id);
      await runtime.removeSnapshot(id, SNAPSHOTTER);
    }
  });

  it('keeps a snapshot prepared after its container record through a GC cycle, without a lease', async () => {
    const image = await images.resolve('busybox');
    assert.ok(image);
    const id = 'c-gc';
    await runtime.createContainer(container(id, image));
    await runtime.prepareSnapshot(id, image, {});
    // The control: the same Prepare with no record naming it is collected, so the GC really ran.
    await unaryCall(api.snapshots, 'Prepare', {
      snapshotter: SNAPSHOTTER,
      key: 'unreferenced',
      parent: image.chainId,
      labels: {},
    });
    await collectGarbage();
    const names = (await snapshots()).map((s) => s.name);
    assert.equal(names.includes('unreferenced'), false, 'the GC did not run');
    assert.ok(names.includes(id), 'the snapshot named by the record was collected');
    await runtime.deleteContainer(id);
    await runtime.removeSnapshot(id, SNAPSHOTTER);
    await collectGarbage();
    assert.equal(
      (await snapshots()).some((s) => s.name === id),
      false,
    );
  });

  it('fails with RuntimeUnavailableError when containerd does not answer', async () => {
    const gone = connectContainerd({
      address: join(tmpdir(), 'cri-ledger-no-such-containerd.sock'),
      namespace: NAMESPACE,
    });
    try {
      const offline = new ContainerdRuntime({ api: gone });
      await assert.rejects(offline.hasContainer('x'), RuntimeUnavailableError);
      await assert.rejects(offline.removeSnapshot('x', SNAPSHOTTER), RuntimeUnavailableError);
      await assert.rejects(new ContainerdImageStore({ api: gone }).resolve('busybox'), RuntimeUnavailableError);
    } finally {
      gone.close();
    }
  });
});
