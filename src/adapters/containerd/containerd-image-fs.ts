import { randomBytes } from 'node:crypto';
import type { ContainerdApi } from './containerd-api.js';
import { collectStream, unaryCall } from './containerd-calls.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';

/** How long ImageFsInfo's usage sum is reused: summing walks every layer (containerd's CRI refreshes every 10 s too). */
export const DEFAULT_IMAGE_FS_CACHE_MS = 10_000;
/** How long the lease of the one-off view used to find the snapshotter's root may live if we crash. */
const VIEW_LEASE_EXPIRY_MS = 60_000;

export interface ImageFsUsage {
  /** The snapshotter's root directory (a path on the filesystem that holds the layers). */
  mountpoint: string;
  usedBytes: string;
  inodesUsed: string;
  /** Nanoseconds since the epoch, when the sum was taken. */
  timestampNs: string;
}

interface WireInfo {
  name: string;
  kind: string;
}

/**
 * ImageFsInfo's numbers: the bytes and inodes of the image layers (the committed
 * snapshots of the namespace, by Snapshots.Usage), and the snapshotter's root. The root
 * is read once from a snapshot's mounts (overlay's `upperdir`/`lowerdir`, or a bind
 * source: `<root>/snapshots/<n>/fs`), through a short-lived view when no container
 * snapshot exists.
 */
export class ContainerdImageFs {
  private root: string | undefined;
  private cached: { at: number; usage: ImageFsUsage } | undefined;

  constructor(private readonly o: { api: ContainerdApi; snapshotter: string; cacheMs?: number }) {}

  usage(): Promise<ImageFsUsage> {
    return unavailableAsRuntimeError(this.compute());
  }

  private async compute(): Promise<ImageFsUsage> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < (this.o.cacheMs ?? DEFAULT_IMAGE_FS_CACHE_MS)) return this.cached.usage;
    const { api, snapshotter } = this.o;
    const infos = (await collectStream<{ info: WireInfo[] }>(api.snapshots, 'List', { snapshotter })).flatMap(
      (m) => m.info,
    );
    let bytes = 0n;
    let inodes = 0n;
    for (const info of infos.filter((i) => i.kind === 'COMMITTED')) {
      const u = await unaryCall<{ size: string; inodes: string }>(api.snapshots, 'Usage', {
        snapshotter,
        key: info.name,
      }).catch(() => ({ size: '0', inodes: '0' }));
      bytes += BigInt(u.size);
      inodes += BigInt(u.inodes);
    }
    this.root ??= await this.findRoot(infos);
    const usage = {
      mountpoint: this.root ?? '',
      usedBytes: bytes.toString(),
      inodesUsed: inodes.toString(),
      timestampNs: (BigInt(now) * 1_000_000n).toString(),
    };
    this.cached = { at: now, usage };
    return usage;
  }

  private async findRoot(infos: WireInfo[]): Promise<string | undefined> {
    const { api, snapshotter } = this.o;
    const active = infos.find((i) => i.kind === 'ACTIVE');
    if (active)
      return rootFromMounts(
        (await unaryCall<{ mounts: WireMount[] }>(api.snapshots, 'Mounts', { snapshotter, key: active.name })).mounts,
      );
    const committed = infos.find((i) => i.kind === 'COMMITTED');
    if (!committed) return undefined;
    const lease = `cri-ledger-fsinfo-${randomBytes(6).toString('hex')}`;
    const key = `${lease}-view`;
    await unaryCall(api.leases, 'Create', {
      id: lease,
      labels: { 'containerd.io/gc.expire': new Date(Date.now() + VIEW_LEASE_EXPIRY_MS).toISOString() },
    });
    try {
      const { mounts } = await unaryCall<{ mounts: WireMount[] }>(
        api.snapshots,
        'View',
        { snapshotter, key, parent: committed.name, labels: {} },
        { lease },
      );
      await unaryCall(api.snapshots, 'Remove', { snapshotter, key }).catch(() => undefined);
      return rootFromMounts(mounts);
    } finally {
      await unaryCall(api.leases, 'Delete', { id: lease }).catch(() => undefined);
    }
  }
}

interface WireMount {
  type: string;
  source: string;
  options: string[];
}

/** `<root>` from a snapshot mount's paths `<root>/snapshots/<n>/fs`. */
export function rootFromMounts(mounts: WireMount[]): string | undefined {
  for (const m of mounts) {
    const paths = [
      m.source,
      ...m.options.flatMap((o) =>
        /^(upperdir|lowerdir|workdir)=/.test(o) ? o.slice(o.indexOf('=') + 1).split(':') : [],
      ),
    ];
    for (const path of paths) {
      const at = path.lastIndexOf('/snapshots/');
      if (at > 0) return path.slice(0, at);
    }
  }
  return undefined;
}
