import { assertNever } from '../domain/events.js';
import { nameIndex } from './name-index.js';

/** Sandbox names, `<name>_<namespace>_<uid>_<attempt>` -> the sandbox holding it. */
export const sandboxNameIndex = nameIndex('sandbox-names', 'sandbox-', (event) => {
  switch (event.type) {
    case 'SandboxReserved':
      return { kind: 'reserve', name: event.data.name, requestDigest: event.data.requestDigest };
    case 'SandboxRemoved':
      return { kind: 'release', name: event.data.name };
    case 'Compensated':
      return event.data.name === undefined ? undefined : { kind: 'release', name: event.data.name };
    case 'NameReserved':
    case 'SpecGenerated':
    case 'SnapshotPrepared':
    case 'ContainerCreated':
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
    case 'HostPathCreated':
    case 'ContainerResourcesUpdated':
    case 'ContainerRemoved':
    case 'SandboxReady':
    case 'SandboxStopped':
    case 'PodCidrUpdated':
    case 'RuntimeReconciled':
    case 'ResultUndelivered':
    case 'RecoveryDecided':
      return undefined;
    case 'OperationStalled':
    case 'ExecStarted':
    case 'ExecEnded':
    case 'AttachStarted':
    case 'AttachEnded':
    case 'PortForwardStarted':
    case 'PortForwardEnded':
      return undefined;
    default:
      return assertNever(event);
  }
});
