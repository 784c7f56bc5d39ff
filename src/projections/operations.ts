import { assertNever, type LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';

/**
 * Operations in flight: streams that began a saga (NameReserved, SandboxReserved) and
 * have no terminal event yet (ContainerCreated, SandboxReady, Compensated). Startup
 * recovery finishes or compensates each; `verify` lists them with their age.
 */
export interface OperationInFlight {
  stream: string;
  operation: 'CreateContainer' | 'RunPodSandbox';
  /** The container or sandbox id the saga's side effects are keyed by. */
  id: string;
  name: string;
  correlationId: string;
  startedAt: string;
  startedSeq: number;
  /** The last step recorded, and when: where a stuck saga stopped. */
  lastStep: string;
  lastStepAt: string;
  /** Set when the caller's deadline passed while a step ran (OperationStalled). */
  stalled?: { step: string; at: string; deadline: string };
  version: number;
}

function begin(event: LedgerEvent, operation: OperationInFlight['operation'], name: string): OperationInFlight {
  return {
    stream: event.stream,
    operation,
    id: parseStream(event.stream).id,
    name,
    correlationId: event.correlationId,
    startedAt: event.at,
    startedSeq: event.seq,
    lastStep: event.type,
    lastStepAt: event.at,
    version: event.version,
  };
}

export const operationsInFlight: Projection<OperationInFlight> = {
  name: 'operations',

  keysOf(event) {
    return event.stream.startsWith('container-') || event.stream.startsWith('sandbox-') ? [event.stream] : [];
  },

  evolve(doc, event) {
    if (doc && event.version <= doc.version) return doc;
    switch (event.type) {
      case 'NameReserved':
        return doc ?? begin(event, 'CreateContainer', event.data.name);
      case 'SandboxReserved':
        return doc ?? begin(event, 'RunPodSandbox', event.data.name);
      case 'SpecGenerated':
      case 'HostPathCreated':
      case 'SnapshotPrepared':
      case 'RecoveryDecided':
        return doc && { ...doc, lastStep: event.type, lastStepAt: event.at, version: event.version };
      case 'ContainerCreated':
      case 'SandboxReady':
      case 'Compensated':
      case 'ContainerRemoved':
      case 'SandboxRemoved':
        return undefined;
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'ImagePullStarted':
      case 'ImagePullProgress':
      case 'ImagePulled':
      case 'ImagePullFailed':
      case 'ImageRemoved':
      case 'RetryServed':
      case 'ExecRan':
      case 'ContainerResourcesUpdated':
      case 'SandboxStopped':
      case 'PodCidrUpdated':
      case 'RuntimeReconciled':
      case 'ResultUndelivered':
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
      case 'PortForwardStarted':
      case 'PortForwardEnded':
        return doc;
      case 'OperationStalled':
        // Not a step reached: lastStep stays the last one recorded.
        return (
          doc && {
            ...doc,
            stalled: { step: event.data.step, at: event.at, deadline: event.data.deadline },
            version: event.version,
          }
        );
      default:
        return assertNever(event);
    }
  },
};
