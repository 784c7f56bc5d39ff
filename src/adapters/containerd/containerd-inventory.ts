import { KIND_LABEL } from '../../commands/pod-runtime.js';
import type { RuntimeInventory } from '../../projections/runtime-diff.js';
import type { ContainerdApi } from './containerd-api.js';
import { collectStream, unaryCall } from './containerd-calls.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';

/** What containerd holds in the api's namespace: container records (with cri-ledger's kind label) and active snapshots. */
export function readInventory(api: ContainerdApi, snapshotter: string): Promise<RuntimeInventory> {
  return unavailableAsRuntimeError(
    (async () => {
      const { containers } = await unaryCall<{ containers: Array<{ id: string; labels: Record<string, string> }> }>(api.containers, 'List', { filters: [] });
      const snapshots = (await collectStream<{ info: Array<{ name: string; kind: string }> }>(api.snapshots, 'List', { snapshotter })).flatMap((m) => m.info);
      return {
        containers: containers.map((c) => ({ id: c.id, kind: c.labels[KIND_LABEL] ?? '' })),
        activeSnapshots: snapshots.filter((s) => s.kind === 'ACTIVE').map((s) => s.name),
      };
    })(),
  );
}
