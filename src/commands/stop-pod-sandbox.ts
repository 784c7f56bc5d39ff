import type { Ledger } from './ledger.js';
import type { SandboxNetwork, TaskRuntime } from './ports.js';
import { sandboxStream } from '../domain/ids.js';
import { stopContainer, type LifecycleDeps } from './container-lifecycle.js';
import { endPauseTask, podNetworkRequest } from './pod-runtime.js';

/*
 * StopPodSandbox: stop the pod's running containers (SIGKILL, as containerd does: kubelet
 * has stopped them gracefully already when it gets here), stop the pause task, tear the
 * pod network down (CNI DEL, given what ADD was given, port mappings included, from the
 * sandbox's record, so a stop after a restart or without the netns removes the pod's
 * host-port rules too), release the network namespace, record SandboxStopped.
 * Idempotent, as kubelet expects: a sandbox that is already stopped, or unknown
 * (removed), is fine. Every undo-style step here succeeds when there is nothing to undo,
 * so a stop interrupted by a crash can run again.
 */

export interface StopPodSandboxDeps {
  ledger: Ledger;
  tasks: TaskRuntime;
  network: SandboxNetwork;
  lifecycle: LifecycleDeps;
}

export async function stopPodSandbox(
  deps: StopPodSandboxDeps,
  o: { sandboxId: string; correlationId: string; now: string },
): Promise<void> {
  const sandbox = deps.ledger.projections.findSandbox(o.sandboxId);
  if (!sandbox) return;
  for (const c of deps.ledger.projections.containers.values()) {
    if (c.sandboxId === sandbox.id && c.state === 'RUNNING')
      await stopContainer(deps.lifecycle, {
        containerId: c.id,
        correlationId: o.correlationId,
        now: o.now,
        timeoutMs: 0,
      });
  }
  if (sandbox.state === 'NOTREADY') return;
  await endPauseTask(deps.tasks, sandbox.id);
  if (!sandbox.hostNetwork) {
    await deps.network.tearDown(podNetworkRequest(sandbox, deps.network));
    await deps.network.removeNetns(sandbox.id);
  }
  // Read again: a port-forward session may have ended (and been recorded) while the
  // network went down; a concurrent stop may have recorded the stop already.
  const current = deps.ledger.projections.sandboxes.get(sandbox.id);
  if (!current || current.state === 'NOTREADY') return;
  await deps.ledger.append(sandboxStream(sandbox.id), current.version, [
    { type: 'SandboxStopped', correlationId: o.correlationId, data: { stoppedAt: o.now } },
  ]);
}
