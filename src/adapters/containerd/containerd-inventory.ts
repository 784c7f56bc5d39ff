import { KIND_LABEL } from '../../commands/pod-runtime.js';
import type { RuntimeInventory } from '../../projections/runtime-diff.js';
import type { ContainerdApi } from './containerd-api.js';
import { collectStream, unaryCall } from './containerd-calls.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';

/** The prefix of every lease cri-ledger makes (pulls: `cri-ledger-pull-`, image views: `cri-ledger-view-`). */
export const LEASE_PREFIX = 'cri-ledger-';

/** Timestamp (seconds as a decimal string, nanos) as ISO 8601. */
function isoOf(t: { seconds: string; nanos: number } | null | undefined): string {
  return new Date(Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6)).toISOString();
}

/** What containerd holds in the api's namespace: container records (with cri-ledger's kind label), active snapshots, and cri-ledger's leases. */
export function readInventory(api: ContainerdApi, snapshotter: string): Promise<RuntimeInventory> {
  return unavailableAsRuntimeError(
    (async () => {
      const { containers } = await unaryCall<{ containers: Array<{ id: string; labels: Record<string, string> }> }>(
        api.containers,
        'List',
        { filters: [] },
      );
      const snapshots = (
        await collectStream<{ info: Array<{ name: string; kind: string }> }>(api.snapshots, 'List', { snapshotter })
      ).flatMap((m) => m.info);
      const { leases } = await unaryCall<{
        leases: Array<{ id: string; created_at: { seconds: string; nanos: number } | null }>;
      }>(api.leases, 'List', { filters: [] });
      return {
        containers: containers.map((c) => ({ id: c.id, kind: c.labels[KIND_LABEL] ?? '' })),
        activeSnapshots: snapshots.filter((s) => s.kind === 'ACTIVE').map((s) => s.name),
        leases: leases
          .filter((l) => l.id.startsWith(LEASE_PREFIX))
          .map((l) => ({ id: l.id, createdAt: isoOf(l.created_at) })),
      };
    })(),
  );
}
