import type { TaskRuntime } from './ports.js';

/*
 * What the pod and container commands share about the runtime: the default runtime,
 * the label that marks cri-ledger's containerd objects, and how a pause task is ended.
 */

/** The runtime a container runs with unless its sandbox names a runtime handler. */
export const DEFAULT_RUNTIME = 'io.containerd.runc.v2';
/** Labels cri-ledger's containerd containers and snapshots with `container` or `sandbox`. */
export const KIND_LABEL = 'io.cri-ledger.kind';
export const SIGKILL = 9;
/** How long a killed pause task may take to exit. */
export const PAUSE_STOP_TIMEOUT_MS = 2_000;

export function runtimeFor(runtimeHandler: string): string {
  return runtimeHandler.length > 0 ? runtimeHandler : DEFAULT_RUNTIME;
}

/** Kills and deletes a pause task: it holds nothing worth a graceful stop. Succeeds when there is none. */
export async function endPauseTask(tasks: TaskRuntime, sandboxId: string): Promise<void> {
  await tasks.stop(sandboxId, SIGKILL, PAUSE_STOP_TIMEOUT_MS);
  await tasks.delete(sandboxId);
}
