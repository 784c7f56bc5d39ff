import { createHash } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import type { ContainerRuntime, ResolvedImage, RuntimeContainer, SnapshotRef } from '../../commands/ports.js';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall } from './containerd-calls.js';
import { ignoreNotFound, unavailableAsRuntimeError } from './containerd-errors.js';
import { jsonAny, OCI_SPEC_TYPE_URL, type WireAny } from './containerd-wire.js';

/** The containers-service extension that holds cri-ledger's metadata. */
export const METADATA_EXTENSION = 'io.cri-ledger.metadata';
/** The Any type URL of that extension's JSON value. */
export const METADATA_TYPE_URL = 'cri-ledger.io/metadata/v1';

/**
 * The lease that holds a container's snapshot from Prepare until the container record
 * references it. Keyed by the container id, so any later step (createContainer, a
 * retry, compensation after a crash) can find and delete it without having kept state.
 */
export function createLeaseId(containerId: string): string {
  return `cri-ledger-create-${containerId}`;
}

/** JSON with object keys sorted: the same spec digests the same after a round trip through the log. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

function specDigest(spec: unknown): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}

interface WireSnapshotInfo {
  name: string;
  parent: string;
  kind: string;
}

interface WireContainer {
  id: string;
  spec: WireAny | null;
}

/**
 * ContainerRuntime on containerd's snapshots, leases and containers services.
 *
 * The snapshot lease protocol: prepareSnapshot creates the lease `createLeaseId(id)`
 * (no expiry: the event log, not a timer, decides when an unfinished creation is
 * abandoned) and prepares under it; createContainer deletes it once the container record
 * references the snapshot; removeSnapshot deletes it too, so compensation leaves nothing.
 *
 * The container's runtime options are left unset (containerd's runc defaults); the
 * task-starting code is where runc's root and similar options belong.
 */
export class ContainerdRuntime implements ContainerRuntime {
  private readonly api: ContainerdApi;

  constructor(options: { api: ContainerdApi }) {
    this.api = options.api;
  }

  prepareSnapshot(containerId: string, image: ResolvedImage, labels: Record<string, string>): Promise<SnapshotRef> {
    return unavailableAsRuntimeError(this.prepare(containerId, image, labels));
  }

  removeSnapshot(containerId: string, snapshotter: string): Promise<void> {
    return unavailableAsRuntimeError(
      (async () => {
        await ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter, key: containerId }));
        await ignoreNotFound(unaryCall(this.api.leases, 'Delete', { id: createLeaseId(containerId) }));
      })(),
    );
  }

  createContainer(container: RuntimeContainer): Promise<void> {
    return unavailableAsRuntimeError(this.create(container));
  }

  deleteContainer(containerId: string): Promise<void> {
    return unavailableAsRuntimeError(ignoreNotFound(unaryCall(this.api.containers, 'Delete', { id: containerId })));
  }

  hasContainer(containerId: string): Promise<boolean> {
    return unavailableAsRuntimeError(
      unaryCall(this.api.containers, 'Get', { id: containerId }).then(
        () => true,
        (error: unknown) => {
          if (hasStatus(error, Status.NOT_FOUND)) return false;
          throw error;
        },
      ),
    );
  }

  private async prepare(containerId: string, image: ResolvedImage, labels: Record<string, string>): Promise<SnapshotRef> {
    const lease = createLeaseId(containerId);
    const ref: SnapshotRef = { snapshotter: image.snapshotter, key: containerId, parent: image.chainId };
    try {
      await unaryCall(this.api.leases, 'Create', { id: lease, labels: { 'io.cri-ledger/container-id': containerId } });
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
    }
    try {
      await unaryCall(this.api.snapshots, 'Prepare', { snapshotter: ref.snapshotter, key: ref.key, parent: ref.parent, labels }, { lease });
      return ref;
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
      // A retry (after a crash, or a caller that timed out): the same snapshot is success.
      const { info } = await unaryCall<{ info: WireSnapshotInfo }>(this.api.snapshots, 'Stat', { snapshotter: ref.snapshotter, key: ref.key });
      if (info.parent !== ref.parent || info.kind !== 'ACTIVE') throw error;
      // It may predate the lease (made before a crash by another lease or none): hold it now.
      await unaryCall(this.api.leases, 'AddResource', { id: lease, resource: { id: ref.key, type: `snapshots/${ref.snapshotter}` } });
      return ref;
    }
  }

  private async create(c: RuntimeContainer): Promise<void> {
    const container = {
      id: c.id,
      labels: c.labels,
      image: c.image.name,
      runtime: { name: c.runtime },
      spec: jsonAny(OCI_SPEC_TYPE_URL, c.spec),
      snapshotter: c.snapshot.snapshotter,
      snapshot_key: c.snapshot.key,
      extensions: { [METADATA_EXTENSION]: jsonAny(METADATA_TYPE_URL, c.extension) },
    };
    try {
      await unaryCall(this.api.containers, 'Create', { container });
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
      // A retry of the same creation is success; a different spec under the id is not.
      const existing = await unaryCall<{ container: WireContainer }>(this.api.containers, 'Get', { id: c.id });
      if (!this.sameSpec(existing.container.spec, c.spec)) throw error;
    }
    // The record references the snapshot now: the lease has done its job.
    await ignoreNotFound(unaryCall(this.api.leases, 'Delete', { id: createLeaseId(c.id) }));
  }

  private sameSpec(stored: WireAny | null, spec: Record<string, unknown>): boolean {
    if (!stored) return false;
    try {
      return specDigest(JSON.parse(Buffer.from(stored.value).toString('utf8'))) === specDigest(spec);
    } catch {
      return false;
    }
  }
}
