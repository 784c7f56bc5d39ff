import type { SandboxRecord } from '../projections/sandbox-store.js';
import type { PodNetworkRequest, SandboxNetwork, TaskRuntime } from './ports.js';

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

/**
 * The CNI request that tears a sandbox's network down, built from its record (so from
 * the log, after a restart too) to match what ADD got: pod identity, netns path and port
 * mappings. portmap's DEL removes the pod's DNAT chain only when it is given the
 * mappings. A sandbox that never got to SandboxReady has no recorded path: ADD used the
 * one the network derives from the id.
 */
export function podNetworkRequest(
  sandbox: SandboxRecord,
  network: Pick<SandboxNetwork, 'netnsPathFor'>,
): PodNetworkRequest {
  const m = sandbox.metadata;
  return {
    sandboxId: sandbox.id,
    netnsPath: sandbox.netnsPath || network.netnsPathFor(sandbox.id),
    podName: m.name,
    podNamespace: m.namespace,
    podUid: m.uid,
    portMappings: sandbox.portMappings,
  };
}
