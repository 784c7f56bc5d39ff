import { assertNever, type LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';

/**
 * Name indexes: a full CRI name -> the container (or sandbox) holding it. A name is
 * held from its reservation until the holder is removed, or until Compensated releases
 * it. A release only frees the name if it comes from the holder's own stream, so a late
 * or repeated release can never free a name that another holder has since reserved.
 */
export interface NameHold {
  name: string;
  /** The container or sandbox id that holds the name. */
  holderId: string;
  /** When and by which request the name was reserved. */
  reservedAt: string;
  reservedSeq: number;
  correlationId: string;
  requestDigest: string;
}

/** What an event does to a name. */
export type NameClaim =
  | { kind: 'reserve'; name: string; requestDigest: string }
  | { kind: 'release'; name: string }
  | undefined;

/** Builds a name index over the streams starting with `streamPrefix`. */
export function nameIndex(
  name: string,
  streamPrefix: string,
  claimOf: (event: LedgerEvent) => NameClaim,
): Projection<NameHold> {
  return {
    name,
    keysOf(event) {
      if (!event.stream.startsWith(streamPrefix)) return [];
      const claim = claimOf(event);
      return claim ? [claim.name] : [];
    },
    evolve(doc, event) {
      const claim = claimOf(event);
      if (claim === undefined) return doc;
      const holderId = parseStream(event.stream).id;
      if (claim.kind === 'release') return doc && doc.holderId === holderId ? undefined : doc;
      if (doc) return doc;
      return {
        name: claim.name,
        holderId,
        reservedAt: event.at,
        reservedSeq: event.seq,
        correlationId: event.correlationId,
        requestDigest: claim.requestDigest,
      };
    },
  };
}

/** Container names, `<name>_<pod>_<namespace>_<uid>_<attempt>`. */
export const containerNameIndex = nameIndex('container-names', 'container-', (event) => {
  switch (event.type) {
    case 'NameReserved':
      return { kind: 'reserve', name: event.data.name, requestDigest: event.data.requestDigest };
    case 'ContainerRemoved':
      return { kind: 'release', name: event.data.name };
    case 'Compensated':
      return event.data.name === undefined ? undefined : { kind: 'release', name: event.data.name };
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
    case 'SandboxReserved':
    case 'SandboxReady':
    case 'SandboxStopped':
    case 'SandboxRemoved':
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
