import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, afterEach, before, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import {
  collectStream,
  ContainerdCallError,
  hasStatus,
  unaryCall,
} from '../../src/adapters/containerd/containerd-calls.js';
import {
  jsonAny,
  OCI_SPEC_TYPE_URL,
  parseJsonAny,
  timestampToNanos,
  type WireAny,
  type WireTimestamp,
} from '../../src/adapters/containerd/containerd-wire.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from '../support/containerd.js';

const NAMESPACE = 'cri-ledger-test';
const SNAPSHOTTER = 'overlayfs';

let containerd: PrivateContainerd;
let api: ContainerdApi;
const cleanups: Array<() => Promise<unknown>> = [];

before(async () => {
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
});

// Each test undoes what it created even when it fails half way.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

after(async () => {
  api?.close();
  if (!containerd) return;
  const dir = dirname(containerd.address);
  await containerd.stop();
  assert.equal(existsSync(dir), false, `${dir} is left behind`);
  assert.deepEqual(mountsUnder(dir), []);
});

const unique = (prefix: string): string => `${prefix}-${randomBytes(4).toString('hex')}`;

/** Rejects unless `promise` fails with gRPC status `code`. */
async function rejectsWith(promise: Promise<unknown>, code: Status): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ContainerdCallError, `not a ContainerdCallError: ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

interface Namespace {
  name: string;
  labels: Record<string, string>;
}

interface Container {
  id: string;
  labels: Record<string, string>;
  runtime: { name: string; options: WireAny | null };
  spec: WireAny;
  snapshotter: string;
  snapshot_key: string;
  created_at: WireTimestamp;
}

interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

it('talks to containerd 1.6', async () => {
  const response = await unaryCall<{ version: string; revision: string }>(api.version, 'Version', {});
  assert.match(response.version, /^1\.6\./);
  assert.notEqual(response.revision, '');
});

it('creates, lists, labels and deletes a namespace', async () => {
  cleanups.push(() => unaryCall(api.namespaces, 'Delete', { name: NAMESPACE }));
  const created = await unaryCall<{ namespace: Namespace }>(api.namespaces, 'Create', {
    namespace: { name: NAMESPACE, labels: { purpose: 'test' } },
  });
  assert.equal(created.namespace.name, NAMESPACE);

  const listed = await unaryCall<{ namespaces: Namespace[] }>(api.namespaces, 'List', {});
  assert.deepEqual(listed.namespaces.find((ns) => ns.name === NAMESPACE)?.labels, { purpose: 'test' });

  await unaryCall(api.namespaces, 'Update', {
    namespace: { name: NAMESPACE, labels: { owner: 'cri-ledger' } },
    update_mask: { paths: ['labels.owner'] },
  });
  const got = await unaryCall<{ namespace: Namespace }>(api.namespaces, 'Get', { name: NAMESPACE });
  assert.deepEqual(got.namespace.labels, { purpose: 'test', owner: 'cri-ledger' });

  await unaryCall(api.namespaces, 'Delete', { name: NAMESPACE });
  // containerd 1.6 answers Get for any name (with no labels); List shows what exists.
  const afterDelete = await unaryCall<{ namespaces: Namespace[] }>(api.namespaces, 'List', {});
  assert.equal(
    afterDelete.namespaces.some((ns) => ns.name === NAMESPACE),
    false,
  );
  await rejectsWith(unaryCall(api.namespaces, 'Delete', { name: NAMESPACE }), Status.NOT_FOUND);
});

it('creates a container record with an OCI spec, reads it back with its labels, and deletes it', async () => {
  const id = unique('ctr');
  const spec = { ociVersion: '1.0.2', process: { args: ['/bin/true'], cwd: '/' }, root: { path: 'rootfs' } };
  const startedAt = BigInt(Date.now()) * 1_000_000n;
  cleanups.push(() => unaryCall(api.containers, 'Delete', { id }));
  await unaryCall(api.containers, 'Create', {
    container: {
      id,
      labels: { 'io.cri-ledger.test': 'yes' },
      runtime: { name: 'io.containerd.runc.v2' },
      spec: jsonAny(OCI_SPEC_TYPE_URL, spec),
      snapshotter: SNAPSHOTTER,
      snapshot_key: id,
    },
  });

  const { container } = await unaryCall<{ container: Container }>(api.containers, 'Get', { id });
  assert.equal(container.id, id);
  assert.deepEqual(container.labels, { 'io.cri-ledger.test': 'yes' });
  assert.equal(container.runtime.name, 'io.containerd.runc.v2');
  assert.equal(container.spec.type_url, OCI_SPEC_TYPE_URL);
  assert.deepEqual(parseJsonAny(container.spec), spec);
  assert.equal(container.snapshot_key, id);
  // int64 seconds arrive as a string and convert without loss.
  assert.equal(typeof container.created_at.seconds, 'string');
  const createdAt = timestampToNanos(container.created_at);
  assert.ok(
    createdAt >= startedAt - 1_000_000_000n && createdAt <= BigInt(Date.now()) * 1_000_000n,
    `created_at ${createdAt}`,
  );

  const listed = await unaryCall<{ containers: Container[] }>(api.containers, 'List', {
    filters: ['labels."io.cri-ledger.test"==yes'],
  });
  assert.deepEqual(
    listed.containers.map((c) => c.id),
    [id],
  );
  const streamed = await collectStream<{ container: Container }>(api.containers, 'ListStream', {});
  assert.deepEqual(
    streamed.map((m) => m.container.id),
    [id],
  );

  await unaryCall(api.containers, 'Delete', { id });
  await rejectsWith(unaryCall(api.containers, 'Get', { id }), Status.NOT_FOUND);
});

it('scopes every call to the namespace in the containerd-namespace header', async () => {
  const id = unique('ctr');
  cleanups.push(() => unaryCall(api.containers, 'Delete', { id }));
  await unaryCall(api.containers, 'Create', {
    container: { id, runtime: { name: 'io.containerd.runc.v2' }, spec: jsonAny(OCI_SPEC_TYPE_URL, {}) },
  });

  const other = connectContainerd({ address: containerd.address, namespace: unique('other') });
  try {
    await rejectsWith(unaryCall(other.containers, 'Get', { id }), Status.NOT_FOUND);
    assert.deepEqual(await collectStream(other.containers, 'ListStream', {}), []);
  } finally {
    other.close();
  }
  const { container } = await unaryCall<{ container: Container }>(api.containers, 'Get', { id });
  assert.equal(container.id, id);
});

it('prepares an active overlayfs snapshot under a lease, mounts and stats it, and removes it', async () => {
  const key = unique('snap');
  const lease = unique('lease');
  cleanups.push(() => unaryCall(api.leases, 'Delete', { id: lease }));
  cleanups.push(() => unaryCall(api.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key }));
  // Without a lease (or a container referencing it) containerd's GC may collect the snapshot.
  await unaryCall(api.leases, 'Create', { id: lease });
  const prepared = await unaryCall<{ mounts: Mount[] }>(
    api.snapshots,
    'Prepare',
    { snapshotter: SNAPSHOTTER, key, labels: { purpose: 'test' } },
    { lease },
  );
  const held = await unaryCall<{ resources: Array<{ id: string; type: string }> }>(api.leases, 'ListResources', {
    id: lease,
  });
  assert.deepEqual(held.resources, [{ id: key, type: `snapshots/${SNAPSHOTTER}` }]);
  assert.equal(prepared.mounts.length, 1);
  const [mount] = prepared.mounts;
  // Without a parent there is nothing to overlay: overlayfs hands out a bind mount of the upper dir.
  assert.ok(mount && ['bind', 'overlay'].includes(mount.type), `mount type ${mount?.type}`);
  assert.ok(mount.source.startsWith(`${containerd.root}/io.containerd.snapshotter.v1.overlayfs/`), mount.source);

  const mounts = await unaryCall<{ mounts: Mount[] }>(api.snapshots, 'Mounts', { snapshotter: SNAPSHOTTER, key });
  assert.deepEqual(mounts.mounts, prepared.mounts);

  const { info } = await unaryCall<{
    info: { name: string; parent: string; kind: string; labels: Record<string, string> };
  }>(api.snapshots, 'Stat', {
    snapshotter: SNAPSHOTTER,
    key,
  });
  assert.deepEqual(
    { name: info.name, parent: info.parent, kind: info.kind, labels: info.labels },
    { name: key, parent: '', kind: 'ACTIVE', labels: { purpose: 'test' } },
  );

  const usage = await unaryCall<{ size: string; inodes: string }>(api.snapshots, 'Usage', {
    snapshotter: SNAPSHOTTER,
    key,
  });
  assert.match(usage.size, /^\d+$/);

  const listed = await collectStream<{ info: Array<{ name: string }> }>(api.snapshots, 'List', {
    snapshotter: SNAPSHOTTER,
  });
  assert.deepEqual(
    listed.flatMap((m) => m.info.map((i) => i.name)),
    [key],
  );

  await unaryCall(api.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key });
  await rejectsWith(unaryCall(api.snapshots, 'Stat', { snapshotter: SNAPSHOTTER, key }), Status.NOT_FOUND);
});

it('creates, lists and deletes a lease', async () => {
  const id = unique('lease');
  cleanups.push(() => unaryCall(api.leases, 'Delete', { id }));
  const created = await unaryCall<{ lease: { id: string; labels: Record<string, string> } }>(api.leases, 'Create', {
    id,
    labels: { purpose: 'test' },
  });
  assert.equal(created.lease.id, id);

  const listed = await unaryCall<{ leases: Array<{ id: string; labels: Record<string, string> }> }>(
    api.leases,
    'List',
    { filters: [`id==${id}`] },
  );
  assert.deepEqual(
    listed.leases.map((l) => [l.id, l.labels]),
    [[id, { purpose: 'test' }]],
  );
  const resources = await unaryCall<{ resources: unknown[] }>(api.leases, 'ListResources', { id });
  assert.deepEqual(resources.resources, []);

  await unaryCall(api.leases, 'Delete', { id });
  const remaining = await unaryCall<{ leases: unknown[] }>(api.leases, 'List', { filters: [`id==${id}`] });
  assert.deepEqual(remaining.leases, []);
});

it('lists an empty content store and reports a missing blob as NOT_FOUND', async () => {
  assert.deepEqual(await collectStream(api.content, 'List', {}), []);
  const digest = `sha256:${'0'.repeat(64)}`;
  await rejectsWith(unaryCall(api.content, 'Info', { digest }), Status.NOT_FOUND);
});

it('ends a call at its deadline, and at once when its signal aborts', async () => {
  // Subscribe streams until the client goes away, so only the deadline or the signal ends it.
  await rejectsWith(collectStream(api.events, 'Subscribe', {}, { timeoutMs: 100 }), Status.DEADLINE_EXCEEDED);
  const controller = new AbortController();
  const subscribed = collectStream(api.events, 'Subscribe', {}, { timeoutMs: Infinity, signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await rejectsWith(subscribed, Status.CANCELLED);
});

it('leaves the test namespace empty, so containerd lets it be deleted', async () => {
  // Deleting a namespace fails with FAILED_PRECONDITION while anything is left in it.
  await unaryCall(api.namespaces, 'Delete', { name: NAMESPACE }).catch((error: unknown) => {
    if (!hasStatus(error, Status.NOT_FOUND)) throw error;
  });
  const listed = await unaryCall<{ namespaces: Namespace[] }>(api.namespaces, 'List', {});
  assert.equal(
    listed.namespaces.some((ns) => ns.name === NAMESPACE),
    false,
  );
});
