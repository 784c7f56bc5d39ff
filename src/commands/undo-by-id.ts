import type { EventData } from '../domain/events.js';
import type { SandboxRecord } from '../projections/sandbox-store.js';
import { endPauseTask, podNetworkRequest } from './pod-runtime.js';
import type { ContainerFiles, ContainerRuntime, PodFiles, SandboxNetwork, TaskRuntime } from './ports.js';

/*
 * Everything a CreateContainer or RunPodSandbox may have left, undone keyed by the id
 * alone, newest first. Each undo succeeds when its side effect never happened, so these
 * lists run the same after a crash (startup recovery), for a result nobody received
 * (replaced or unclaimed), and for a saga cut short at any step.
 */

export type UndoResult = EventData['Compensated']['undone'][number];

/** One undo: the saga step whose side effect it removes, and how. */
export type Undo = [step: string, run: () => Promise<unknown>];

export function containerUndos(
  deps: { runtime: ContainerRuntime; files: ContainerFiles },
  id: string,
  snapshotter: string,
): Undo[] {
  return [
    ['SnapshotPrepared', () => deps.runtime.removeSnapshot(id, snapshotter)],
    ['ContainerRecord', () => deps.runtime.deleteContainer(id)],
    ['Directories', () => deps.files.removeDirs(id)],
  ];
}

/** `snapshotter` undefined: no snapshot was ever recorded for the sandbox, so there is none to remove. */
export function sandboxUndos(
  deps: { runtime: ContainerRuntime; tasks: TaskRuntime; network: SandboxNetwork; podFiles: PodFiles },
  id: string,
  snapshotter: string | undefined,
  sandbox: SandboxRecord | undefined,
): Undo[] {
  const undos: Undo[] = [['SandboxReady', () => endPauseTask(deps.tasks, id)]];
  if (snapshotter !== undefined) undos.push(['SnapshotPrepared', () => deps.runtime.removeSnapshot(id, snapshotter)]);
  undos.push(['PauseCreated', () => deps.runtime.deleteContainer(id)]);
  if (sandbox && !sandbox.hostNetwork) {
    const network = podNetworkRequest(sandbox, deps.network);
    undos.push(
      ['NetworkSetUp', () => deps.network.tearDown(network)],
      ['NetworkNamespace', () => deps.network.removeNetns(id)],
    );
  }
  undos.push(['PodFiles', () => deps.podFiles.remove(id)]);
  return undos;
}

/**
 * Runs every undo (one failing does not stop the others) and reports each, with the
 * first failure's own error (so a caller can rethrow what containerd said); `clock` is
 * monotonic milliseconds.
 */
export async function runUndos(
  undos: readonly Undo[],
  clock: () => number,
): Promise<{ results: UndoResult[]; firstError?: unknown }> {
  const results: UndoResult[] = [];
  let firstError: unknown;
  let failed = false;
  for (const [step, run] of undos) {
    const started = clock();
    const durationMs = (): number => Math.max(0, Math.round((clock() - started) * 1000) / 1000);
    try {
      await run();
      results.push({ step, ok: true, durationMs: durationMs() });
    } catch (error) {
      if (!failed) [failed, firstError] = [true, error];
      results.push({
        step,
        ok: false,
        error: error instanceof Error ? error.message : String(error),
        durationMs: durationMs(),
      });
    }
  }
  return failed ? { results, firstError } : { results };
}
