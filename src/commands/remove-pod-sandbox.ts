import { sandboxStream } from '../domain/ids.js';
import { removeContainer, type LifecycleDeps } from './container-lifecycle.js';
import type { Ledger } from './ledger.js';
import type { ContainerRuntime, PodFiles, SandboxNetwork, TaskRuntime } from './ports.js';
import { stopPodSandbox } from './stop-pod-sandbox.js';

/*
 * RemovePodSandbox: stop it if it still runs, remove its containers (their containerd
 * records, snapshots and dirs; ContainerRemoved releases each name), then the pause
 * container, its snapshot and the pod files; SandboxRemoved releases the pod's name.
 * Idempotent: an unknown sandbox is fine, and each removal succeeds when nothing is
 * there, so a removal cut short by a crash can run again.
 */

export interface RemovePodSandboxDeps {
  ledger: Ledger;
  tasks: TaskRuntime;
  network: SandboxNetwork;
  runtime: ContainerRuntime;
  podFiles: PodFiles;
  lifecycle: LifecycleDeps;
  /** The snapshotter the pause and container snapshots are in. */
  snapshotter: string;
}

export async function removePodSandbox(
  deps: RemovePodSandboxDeps,
  o: { sandboxId: string; correlationId: string; now: string },
): Promise<void> {
  const sandbox = deps.ledger.projections.findSandbox(o.sandboxId);
  if (!sandbox) return;
  await stopPodSandbox(deps, o);
  for (const container of [...deps.ledger.projections.containers.values()].filter((c) => c.sandboxId === sandbox.id)) {
    await removeContainer(deps.lifecycle, { containerId: container.id, correlationId: o.correlationId, now: o.now });
  }
  // The pause task is gone (stopPodSandbox deleted it, now or at an earlier stop), so
  // its record, its snapshot and the pod's files are independent, as a container's are.
  await Promise.all([
    deps.runtime.deleteContainer(sandbox.id),
    deps.runtime.removeSnapshot(sandbox.id, deps.snapshotter),
    deps.podFiles.remove(sandbox.id),
  ]);
  const current = deps.ledger.projections.sandboxes.get(sandbox.id);
  if (current) {
    await deps.ledger.append(sandboxStream(sandbox.id), current.version, [
      { type: 'SandboxRemoved', correlationId: o.correlationId, data: { name: sandbox.name, removedAt: o.now } },
    ]);
  }
}
