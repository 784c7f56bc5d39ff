import type { Ledger } from './ledger.js';
import type { SandboxNetwork, TaskRuntime } from './ports.js';
import { sandboxStream } from '../domain/ids.js';
import { endPauseTask } from './pod-runtime.js';

/*
 * StopPodSandbox: stop the pause task, tear the pod network down (CNI DEL), release the
 * network namespace, record SandboxStopped. Idempotent, as kubelet expects: a sandbox
 * that is already stopped, or unknown (removed), is fine. Every undo-style step here
 * succeeds when there is nothing to undo, so a stop interrupted by a crash can run again.
 */

export interface StopPodSandboxDeps {
  ledger: Ledger;
  tasks: TaskRuntime;
  network: SandboxNetwork;
}

export async function stopPodSandbox(deps: StopPodSandboxDeps, o: { sandboxId: string; correlationId: string; now: string }): Promise<void> {
  const sandbox = deps.ledger.projections.findSandbox(o.sandboxId);
  if (!sandbox || sandbox.state === 'NOTREADY') return;
  await endPauseTask(deps.tasks, sandbox.id);
  if (!sandbox.hostNetwork) {
    const m = sandbox.metadata;
    await deps.network.tearDown({ sandboxId: sandbox.id, netnsPath: sandbox.netnsPath ?? '', podName: m.name, podNamespace: m.namespace, podUid: m.uid, portMappings: [] });
    await deps.network.removeNetns(sandbox.id);
  }
  await deps.ledger.append(sandboxStream(sandbox.id), sandbox.version, [{ type: 'SandboxStopped', correlationId: o.correlationId, data: { stoppedAt: o.now } }]);
}
