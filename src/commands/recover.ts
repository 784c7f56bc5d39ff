import type { OperationInFlight } from '../projections/operations.js';
import { orphanLabel, type RuntimeDiff } from '../projections/runtime-diff.js';
import type { Ledger } from './ledger.js';
import { endPauseTask } from './pod-runtime.js';
import type { ContainerFiles, ContainerRuntime, PodFiles, SandboxNetwork, TaskRuntime } from './ports.js';

/*
 * Startup recovery of the sagas a previous process left in flight (a stream with
 * NameReserved or SandboxReserved and no terminal event): the service stopped, or was
 * killed, while the saga ran, so its caller never got an answer. Each is compensated,
 * keyed by its id: every undo of its operation runs newest first, whether or not its
 * side effect happened (each undo succeeds when there is nothing to undo), and one
 * `Compensated` records the decision (`failedStep: StartupRecovery`), the step the saga
 * had reached, and each undo. The name is free again, so kubelet's retry of the same
 * name succeeds instead of looping on "name is reserved".
 *
 * Compensating is always safe here: the result was never delivered to a caller (a
 * delivered result ends the saga with its terminal event first). Rolling forward (for a
 * CreateContainer whose containerd record and snapshot both exist) would save the retry
 * one creation; it is left for the idempotent-retry work.
 *
 * One broken item never stops the others: a failed undo is recorded as failed, and the
 * stream stays in flight for the next start to try again.
 */

export const RECOVERY_STEP = 'StartupRecovery';
export const RECOVERY_CODE = 'RECOVERY';

export interface RecoveryDeps {
  ledger: Ledger;
  runtime: ContainerRuntime;
  tasks: TaskRuntime;
  containerFiles: ContainerFiles;
  podFiles: PodFiles;
  network: SandboxNetwork;
  snapshotter: string;
  /** Milliseconds on a monotonic clock, for the undo durations. */
  clock: () => number;
}

export interface RecoveryOutcome {
  stream: string;
  operation: OperationInFlight['operation'];
  id: string;
  /** Every undo succeeded and Compensated is recorded. */
  compensated: boolean;
  undone: Array<{ step: string; ok: boolean; error?: string; durationMs: number }>;
}

type Undo = [step: string, run: () => Promise<unknown>];

function undosOf(deps: RecoveryDeps, op: OperationInFlight): Undo[] {
  const id = op.id;
  if (op.operation === 'CreateContainer') {
    return [
      ['SnapshotPrepared', () => deps.runtime.removeSnapshot(id, deps.snapshotter)],
      ['ContainerRecord', () => deps.runtime.deleteContainer(id)],
      ['Directories', () => deps.containerFiles.removeDirs(id)],
    ];
  }
  const sandbox = deps.ledger.projections.sandboxes.get(id);
  const m = sandbox?.metadata;
  const undos: Undo[] = [
    ['SandboxReady', () => endPauseTask(deps.tasks, id)],
    ['SnapshotPrepared', () => deps.runtime.removeSnapshot(id, deps.snapshotter)],
    ['PauseCreated', () => deps.runtime.deleteContainer(id)],
  ];
  if (sandbox && !sandbox.hostNetwork && m) {
    const network = { sandboxId: id, netnsPath: deps.network.netnsPathFor(id), podName: m.name, podNamespace: m.namespace, podUid: m.uid, portMappings: [] };
    undos.push(['NetworkSetUp', () => deps.network.tearDown(network)], ['NetworkNamespace', () => deps.network.removeNetns(id)]);
  }
  undos.push(['PodFiles', () => deps.podFiles.remove(id)]);
  return undos;
}

/** Compensates each of `inFlight` (the sagas in flight when this process started). */
export async function recoverInFlight(deps: RecoveryDeps, inFlight: readonly OperationInFlight[]): Promise<RecoveryOutcome[]> {
  const outcomes: RecoveryOutcome[] = [];
  for (const op of inFlight) {
    const current = deps.ledger.projections.operations.get(op.stream);
    if (!current) continue; // ended meanwhile
    const undone: RecoveryOutcome['undone'] = [];
    for (const [step, run] of undosOf(deps, op)) {
      const started = deps.clock();
      try {
        await run();
        undone.push({ step, ok: true, durationMs: Math.round((deps.clock() - started) * 1000) / 1000 });
      } catch (error) {
        undone.push({ step, ok: false, error: error instanceof Error ? error.message : String(error), durationMs: Math.round((deps.clock() - started) * 1000) / 1000 });
      }
    }
    const compensated = undone.every((u) => u.ok);
    if (compensated) {
      await deps.ledger.append(op.stream, current.version, [
        {
          type: 'Compensated',
          correlationId: op.correlationId,
          data: {
            operation: op.operation,
            failedStep: RECOVERY_STEP,
            error: { message: `the service stopped while ${op.operation} was at ${current.lastStep}; its caller never got an answer, so it was undone at startup`, code: RECOVERY_CODE },
            undone,
            name: op.name,
          },
        },
      ]);
    }
    outcomes.push({ stream: op.stream, operation: op.operation, id: op.id, compensated, undone });
  }
  return outcomes;
}

/**
 * Removes what containerd holds with cri-ledger's labels that the log never heard of
 * (left by a crash before a saga's first event, or made by hand), and records that and
 * the log's objects containerd lacks in one RuntimeReconciled on the node's stream.
 * Writes nothing when the two agree.
 */
export async function reconcileWithRuntime(
  deps: RecoveryDeps & { nodeStream: string; correlationId: string },
  diff: RuntimeDiff,
): Promise<RuntimeDiff> {
  const removed: Array<{ kind: string; id: string; ok: boolean; error?: string }> = [];
  const attempt = async (kind: string, id: string, steps: Array<() => Promise<unknown>>): Promise<void> => {
    try {
      for (const step of steps) await step();
      removed.push({ kind, id, ok: true });
    } catch (error) {
      removed.push({ kind, id, ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  };
  for (const c of diff.orphanContainers) {
    await attempt(orphanLabel(c.kind), c.id, [() => endPauseTask(deps.tasks, c.id), () => deps.runtime.deleteContainer(c.id), () => deps.runtime.removeSnapshot(c.id, deps.snapshotter)]);
  }
  for (const key of diff.orphanSnapshots) await attempt('snapshot', key, [() => deps.runtime.removeSnapshot(key, deps.snapshotter)]);
  if (removed.length > 0 || diff.missing.length > 0) {
    await deps.ledger.append(deps.nodeStream, 'any', [{ type: 'RuntimeReconciled', correlationId: deps.correlationId, data: { orphansRemoved: removed, missing: diff.missing } }]);
  }
  return diff;
}
