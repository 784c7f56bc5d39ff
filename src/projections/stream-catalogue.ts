import { assertNever, type EventType, type LedgerEvent } from '../domain/events.js';

/*
 * The stream catalogue: what retention needs to know of each container and sandbox
 * stream the local log still holds, one entry per stream, and whether it has ended.
 *
 *   (first event) ──> open ──ContainerRemoved / SandboxRemoved / Compensated──> ended
 *
 * An ended stream can still get an event: a session that outlived its container ends
 * with ExecEnded or AttachEnded after ContainerRemoved (open-sessions.ts). So an entry
 * also counts the sessions started and not ended in its stream; retention waits for 0.
 * Image and node streams never end: they are not catalogued, so never pruned.
 *
 * One event reaches across streams in the read models: a container's NameReserved
 * claims its sandbox's undelivered result (undelivered-results.ts). So an entry keeps
 * its container's sandbox, and a sandbox's whether it ever had a ResultUndelivered:
 * while such a sandbox stream is held, its containers' streams must stay too.
 */

export interface StreamEntry {
  stream: string;
  kind: 'container' | 'sandbox';
  /** The CRI name, from the reservation (absent when the log no longer holds it). */
  name?: string;
  firstSeq: number;
  lastSeq: number;
  lastAt: string;
  /** The stream's last version. */
  version: number;
  /** Events the local log holds, and their stored JSON size (one copy). */
  events: number;
  bytes: number;
  /** When the terminal event was recorded, and which it was. */
  endedAt?: string;
  endedBy?: EventType;
  /** Ids of sessions started and not ended in this stream. */
  openSessions: readonly string[];
  /** A container's sandbox id, from its reservation. */
  sandboxId?: string;
  /** A sandbox stream that recorded ResultUndelivered: a container's reservation may have claimed it. */
  undelivered?: true;
}

/** The terminal events: after one of them the container or sandbox no longer exists. */
export const STREAM_END: ReadonlySet<EventType> = new Set(['ContainerRemoved', 'SandboxRemoved', 'Compensated']);

/** Whether a stream is one the catalogue keeps (containers and sandboxes). */
export function catalogued(stream: string): boolean {
  return stream.startsWith('container-') || stream.startsWith('sandbox-');
}

/** The next entry for `stream` after `event` (`bytes`: its stored size); pure. */
export function evolveStreamEntry(entry: StreamEntry | undefined, event: LedgerEvent, bytes: number): StreamEntry {
  const base: StreamEntry = entry ?? {
    stream: event.stream,
    kind: event.stream.startsWith('sandbox-') ? 'sandbox' : 'container',
    firstSeq: event.seq,
    lastSeq: event.seq,
    lastAt: event.at,
    version: 0,
    events: 0,
    bytes: 0,
    openSessions: [],
  };
  if (entry && event.seq <= entry.lastSeq) return entry;
  const next: StreamEntry = {
    ...base,
    lastSeq: event.seq,
    lastAt: event.at,
    version: event.version,
    events: base.events + 1,
    bytes: base.bytes + bytes,
  };
  switch (event.type) {
    case 'NameReserved':
      return { ...next, name: event.data.name, sandboxId: event.data.sandboxId };
    case 'SandboxReserved':
      return { ...next, name: event.data.name };
    case 'ResultUndelivered':
      return event.stream.startsWith('sandbox-') ? { ...next, undelivered: true } : next;
    case 'ContainerRemoved':
    case 'SandboxRemoved':
    case 'Compensated':
      return { ...next, endedAt: base.endedAt ?? event.at, endedBy: base.endedBy ?? event.type };
    case 'ExecStarted':
    case 'AttachStarted':
    case 'PortForwardStarted':
      return { ...next, openSessions: [...base.openSessions, event.data.sessionId] };
    case 'ExecEnded':
    case 'AttachEnded':
    case 'PortForwardEnded':
      return { ...next, openSessions: base.openSessions.filter((id) => id !== event.data.sessionId) };
    case 'SpecGenerated':
    case 'SnapshotPrepared':
    case 'ContainerCreated':
    case 'HostPathCreated':
    case 'SandboxReady':
    case 'SandboxStopped':
    case 'ContainerStarted':
    case 'ContainerExited':
    case 'ContainerStopped':
    case 'ExecRan':
    case 'RetryServed':
    case 'ContainerResourcesUpdated':
    case 'ImagePullStarted':
    case 'ImagePullProgress':
    case 'ImagePulled':
    case 'ImagePullFailed':
    case 'ImageRemoved':
    case 'PodCidrUpdated':
    case 'RuntimeReconciled':
    case 'OperationStalled':
    case 'RecoveryDecided':
      return next;
    default:
      return assertNever(event);
  }
}

/** An entry after retention removed `events` of its oldest events (`bytes` of them); undefined when none is left. */
export function afterPrune(entry: StreamEntry, pruned: { events: number; bytes: number }): StreamEntry | undefined {
  const events = entry.events - pruned.events;
  if (events <= 0) return undefined;
  return { ...entry, events, bytes: Math.max(0, entry.bytes - pruned.bytes) };
}
