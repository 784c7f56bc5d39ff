import { type Revalidating, staleWhileRevalidate } from '../cache/stale-while-revalidate.js';
import { status as Status } from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall, type ContainerdCallOptions } from './containerd-calls.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';
import { timestampToNanos, type WireAny, type WireTimestamp } from './containerd-wire.js';
import { decodeCgroupMetrics, type CpuUsage, type MemoryUsage } from './cgroup-metrics.js';

export type { CpuUsage, MemoryUsage } from './cgroup-metrics.js';

/** Where a container's writable layer lives: its rootfs snapshot. */
export interface SnapshotRef {
  snapshotter: string;
  key: string;
}

/** What the snapshotter counts in a writable layer, as decimal strings (int64). */
/** A cached writable-layer usage older than this is refreshed in the background (kubelet asks every 10 s). */
export const USAGE_REFRESH_MS = 10_000;
/** A layer nobody asked about for this long leaves the cache (its container is gone). */
export const USAGE_FORGET_MS = 60_000;

export interface WritableLayerUsage {
  /** Bytes the layer's own files take on disk (overlayfs: blocks of the upper dir). */
  usedBytes: string;
  inodesUsed: string;
}

/**
 * One container's stats at one moment. Counts are decimal strings, as every 64-bit value
 * in the containerd adapters and the generated CRI types (`longs: String`), so they go
 * into a CRI response as they are; a number would round above 2^53.
 */
export interface ContainerStatsSample {
  containerId: string;
  /** When containerd read the cgroup, nanoseconds since the epoch. */
  timestampNs: string;
  cpu?: CpuUsage;
  memory?: MemoryUsage;
  /** Only when the caller named the container's snapshot and it exists. */
  writableLayer?: WritableLayerUsage;
}

export interface ContainerStatsOptions {
  /** Snapshots whose usage to add, by container id; others get no writableLayer. */
  snapshots?: ReadonlyMap<string, SnapshotRef>;
}

interface WireMetric {
  timestamp: WireTimestamp | null;
  id: string;
  data: WireAny | null;
}

/**
 * The filters for Tasks.Metrics: one per id, which containerd ORs. Values are
 * double-quoted: containerd's filter syntax reads a bare `/` or `|` as the start of a
 * quoted value, and ids are not ours to restrict.
 */
export function metricsFilters(containerIds: readonly string[]): string[] {
  return containerIds.map((id) => `id==${JSON.stringify(id)}`);
}

/**
 * Container stats from containerd: cgroup CPU and memory through Tasks.Metrics, the
 * writable layer through Snapshots.Usage. Read-only; nothing here changes containerd.
 *
 * A container is in the result only when containerd has a task for it whose cgroup it
 * could read; every other id is left out, not an error, as containerd's CRI does.
 * UNAVAILABLE becomes RuntimeUnavailableError; every other failure stays a
 * ContainerdCallError. A payload that cannot be decoded is logged and its container left
 * out, so one odd task does not cost the node its stats.
 */
export class ContainerdStats {
  private readonly api: ContainerdApi;
  private readonly logger: Logger;
  /** Writable-layer usage by snapshot, each read kept and refreshed (see cachedUsage). */
  private readonly usageCache = new Map<
    string,
    { read: Revalidating<WritableLayerUsage | undefined>; askedAt: number }
  >();
  private usageSweptAt = 0;

  private readonly usageRefreshMs: number;

  constructor(options: { api: ContainerdApi; logger?: Logger; usageRefreshMs?: number }) {
    this.api = options.api;
    this.usageRefreshMs = options.usageRefreshMs ?? USAGE_REFRESH_MS;
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'containerd-stats' });
  }

  /** Stats of every id with a task, from one Tasks.Metrics call (plus one Usage per snapshot). */
  containerStats(
    containerIds: readonly string[],
    options: ContainerStatsOptions = {},
    call: ContainerdCallOptions = {},
  ): Promise<Map<string, ContainerStatsSample>> {
    return unavailableAsRuntimeError(this.collect([...new Set(containerIds)], options.snapshots, call));
  }

  /** The snapshot's usage; undefined when it does not exist. Cost grows with the layer's files. */
  writableLayer(
    snapshotter: string,
    key: string,
    call: ContainerdCallOptions = {},
  ): Promise<WritableLayerUsage | undefined> {
    return unavailableAsRuntimeError(this.usage({ snapshotter, key }, call));
  }

  private async collect(
    ids: string[],
    snapshots: ReadonlyMap<string, SnapshotRef> | undefined,
    call: ContainerdCallOptions,
  ): Promise<Map<string, ContainerStatsSample>> {
    const samples = new Map<string, ContainerStatsSample>();
    // No filters would mean every task in the namespace.
    if (ids.length === 0) return samples;
    const wanted = new Set(ids);
    const { metrics } = await unaryCall<{ metrics: WireMetric[] }>(
      this.api.tasks,
      'Metrics',
      { filters: metricsFilters(ids) },
      call,
    );
    for (const metric of metrics) {
      if (!wanted.has(metric.id) || !metric.data) continue;
      try {
        const usage = decodeCgroupMetrics(metric.data.type_url, metric.data.value);
        const timestampNs = metric.timestamp ? String(timestampToNanos(metric.timestamp)) : '0';
        samples.set(metric.id, { containerId: metric.id, timestampNs, ...usage });
      } catch (err) {
        this.logger.error(
          {
            err,
            containerId: metric.id,
            typeUrl: metric.data.type_url,
            payload: Buffer.from(metric.data.value).toString('base64'),
          },
          'cannot decode task metrics',
        );
      }
    }
    if (snapshots) {
      await Promise.all(
        [...samples.values()].map(async (sample) => {
          const ref = snapshots.get(sample.containerId);
          const layer = ref && (await this.cachedUsage(ref));
          if (layer) sample.writableLayer = layer;
        }),
      );
    }
    return samples;
  }

  /**
   * A writable layer's usage walks its files, so a stats call over 220 containers would
   * walk 220 trees while kubelet waits. The first call for a layer pays it; after that
   * the last figure is answered at once and, once it is usageRefreshMs old, refreshed
   * in the background (one refresh per layer at a time), as containerd's CRI answers
   * from its snapshot syncer's cache. A layer not asked about for USAGE_FORGET_MS is
   * dropped from the cache.
   */
  private cachedUsage(ref: SnapshotRef): Promise<WritableLayerUsage | undefined> {
    const key = `${ref.snapshotter}/${ref.key}`;
    const now = Date.now();
    this.forgetStaleUsage(now);
    let entry = this.usageCache.get(key);
    if (!entry) {
      // Never too old to answer at once: the walk is what the cache spares kubelet. The
      // reads outlive the call that began them, so they carry no call's deadline.
      const read = staleWhileRevalidate(() => this.usage(ref, {}), {
        freshMs: this.usageRefreshMs,
        maxStaleMs: Number.POSITIVE_INFINITY,
      });
      entry = { read, askedAt: now };
      this.usageCache.set(key, entry);
    }
    entry.askedAt = now;
    return entry.read();
  }

  private forgetStaleUsage(now: number): void {
    if (now - this.usageSweptAt < USAGE_FORGET_MS) return;
    this.usageSweptAt = now;
    for (const [key, entry] of this.usageCache) if (now - entry.askedAt >= USAGE_FORGET_MS) this.usageCache.delete(key);
  }

  private async usage(ref: SnapshotRef, call: ContainerdCallOptions): Promise<WritableLayerUsage | undefined> {
    try {
      const { size, inodes } = await unaryCall<{ size: string; inodes: string }>(
        this.api.snapshots,
        'Usage',
        { snapshotter: ref.snapshotter, key: ref.key },
        call,
      );
      return { usedBytes: size, inodesUsed: inodes };
    } catch (error) {
      if (hasStatus(error, Status.NOT_FOUND)) return undefined;
      throw error;
    }
  }
}
