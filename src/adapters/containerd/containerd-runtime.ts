import { createHash } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import type {
  ContainerRuntime,
  PreparedSnapshot,
  ResolvedImage,
  RootfsMount,
  RuntimeContainer,
  StoredContainer,
} from '../../commands/ports.js';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall } from './containerd-calls.js';
import { ignoreNotFound, unavailableAsRuntimeError } from './containerd-errors.js';
import { jsonAny, OCI_SPEC_TYPE_URL, parseJsonAny, type WireAny } from './containerd-wire.js';

/** The containers-service extension that holds cri-ledger's metadata. */
export const METADATA_EXTENSION = 'io.cri-ledger.metadata';
/** The Any type URL of that extension's JSON value. */
export const METADATA_TYPE_URL = 'cri-ledger.io/metadata/v1';

/** JSON with object keys sorted: the same spec digests the same after a round trip through the log. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
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
  snapshotter?: string;
  snapshot_key?: string;
  extensions?: Record<string, WireAny>;
}

/**
 * ContainerRuntime on containerd's snapshots and containers services.
 *
 * No lease: the container record is created first and names its snapshot (snapshotter
 * and key = the container id), and containerd's garbage collector never collects a
 * snapshot a container references, even one prepared after the record. That is two
 * round trips (Create, Prepare) where containerd's own client makes four (lease create,
 * Prepare, Create, lease delete). containerd accepts a record whose snapshot does not
 * exist yet; a crash between the two leaves a record that compensation, keyed by the id,
 * deletes.
 *
 * Both calls are retry-safe: the same record or the same snapshot already there is
 * success, so a saga can redo a step after a crash without knowing whether it happened.
 */
export class ContainerdRuntime implements ContainerRuntime {
  private readonly api: ContainerdApi;

  constructor(options: { api: ContainerdApi }) {
    this.api = options.api;
  }

  prepareSnapshot(
    containerId: string,
    image: ResolvedImage,
    labels: Record<string, string>,
  ): Promise<PreparedSnapshot> {
    return unavailableAsRuntimeError(this.prepare(containerId, image, labels));
  }

  removeSnapshot(containerId: string, snapshotter: string): Promise<void> {
    return unavailableAsRuntimeError(
      ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter, key: containerId })),
    );
  }

  createContainer(container: RuntimeContainer): Promise<void> {
    return unavailableAsRuntimeError(this.create(container));
  }

  deleteContainer(containerId: string): Promise<void> {
    return unavailableAsRuntimeError(ignoreNotFound(unaryCall(this.api.containers, 'Delete', { id: containerId })));
  }

  deleteLease(leaseId: string): Promise<void> {
    // Not synchronous: containerd's next GC collects what only the lease held.
    return unavailableAsRuntimeError(ignoreNotFound(unaryCall(this.api.leases, 'Delete', { id: leaseId })));
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

  storedContainer(containerId: string): Promise<StoredContainer | undefined> {
    return unavailableAsRuntimeError(
      unaryCall<{ container: WireContainer }>(this.api.containers, 'Get', { id: containerId }).then(
        ({ container: c }) => {
          const extension = c.extensions?.[METADATA_EXTENSION];
          return {
            spec: c.spec ? parseJsonAny<Record<string, unknown>>(c.spec) : {},
            extension: extension ? parseJsonAny<Record<string, unknown>>(extension) : {},
            snapshotter: c.snapshotter ?? '',
            snapshotKey: c.snapshot_key ?? '',
          };
        },
        (error: unknown) => {
          if (hasStatus(error, Status.NOT_FOUND)) return undefined;
          throw error;
        },
      ),
    );
  }

  statSnapshot(key: string, snapshotter: string): Promise<{ parent: string } | undefined> {
    return unavailableAsRuntimeError(
      unaryCall<{ info: WireSnapshotInfo }>(this.api.snapshots, 'Stat', { snapshotter, key }).then(
        ({ info }) => (info.kind === 'ACTIVE' ? { parent: info.parent } : undefined),
        (error: unknown) => {
          if (hasStatus(error, Status.NOT_FOUND)) return undefined;
          throw error;
        },
      ),
    );
  }

  private async prepare(
    containerId: string,
    image: ResolvedImage,
    labels: Record<string, string>,
  ): Promise<PreparedSnapshot> {
    const ref = { snapshotter: image.snapshotter, key: containerId, parent: image.chainId };
    try {
      const { mounts } = await unaryCall<{ mounts: RootfsMount[] }>(this.api.snapshots, 'Prepare', {
        snapshotter: ref.snapshotter,
        key: ref.key,
        parent: ref.parent,
        labels,
      });
      return { ...ref, mounts };
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
      // A retry (after a crash, or a caller that timed out): the same snapshot is success.
      const { info } = await unaryCall<{ info: WireSnapshotInfo }>(this.api.snapshots, 'Stat', {
        snapshotter: ref.snapshotter,
        key: ref.key,
      });
      if (info.parent !== ref.parent || info.kind !== 'ACTIVE') throw error;
      const { mounts } = await unaryCall<{ mounts: RootfsMount[] }>(this.api.snapshots, 'Mounts', {
        snapshotter: ref.snapshotter,
        key: ref.key,
      });
      return { ...ref, mounts };
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
