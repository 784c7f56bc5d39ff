import { assertNever, type LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';

/**
 * Container name index: full CRI name -> the container holding it. A name is held from
 * NameReserved until ContainerRemoved, or until Compensated releases it. A release
 * only frees the name if it comes from the holder's own stream, so a late or repeated
 * release can never free a name that another container has since reserved.
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

function holderOf(event: LedgerEvent): string {
  return parseStream(event.stream).id;
}

export function reserve(doc: NameHold | undefined, event: LedgerEvent, name: string, requestDigest: string): NameHold {
  if (doc) return doc;
  return { name, holderId: holderOf(event), reservedAt: event.at, reservedSeq: event.seq, correlationId: event.correlationId, requestDigest };
}

export function release(doc: NameHold | undefined, event: LedgerEvent): NameHold | undefined {
  return doc && doc.holderId === holderOf(event) ? undefined : doc;
}

export const containerNameIndex: Projection<NameHold> = {
  name: 'container-names',

  keysOf(event) {
    if (!event.stream.startsWith('container-')) return [];
    switch (event.type) {
      case 'NameReserved':
      case 'ContainerRemoved':
        return [event.data.name];
      case 'Compensated':
        return event.data.name === undefined ? [] : [event.data.name];
      default:
        return [];
    }
  },

  evolve(doc, event) {
    switch (event.type) {
      case 'NameReserved':
        return reserve(doc, event, event.data.name, event.data.requestDigest);
      case 'ContainerRemoved':
      case 'Compensated':
        return release(doc, event);
      case 'SpecGenerated':
      case 'SnapshotPrepared':
      case 'ContainerCreated':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'SandboxReserved':
      case 'SandboxReady':
      case 'SandboxStopped':
      case 'SandboxRemoved':
        return doc;
      default:
        return assertNever(event);
    }
  },
};
