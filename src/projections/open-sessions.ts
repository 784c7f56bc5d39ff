import { assertNever, type LedgerEvent, type SessionKind } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';

/*
 * Open sessions: Exec, Attach and PortForward sessions that started and have not ended,
 * keyed by session id. Startup recovery ends each one it finds (a session cannot outlive
 * the process that bridged it); `status` counts them.
 *
 *   ExecStarted / AttachStarted / PortForwardStarted ──> open ──*Ended──> (gone)
 *
 * A session stays open on the record when its container or sandbox is removed first:
 * only its own end event closes it, so the log always says how it ended.
 */

export interface OpenSession {
  sessionId: string;
  kind: SessionKind;
  /** `container-<id>` (exec, attach) or `sandbox-<id>` (portforward). */
  stream: string;
  /** The container id (exec, attach) or the sandbox id (portforward). */
  targetId: string;
  /** The CRI call that asked for the session's URL; its end is recorded with it too. */
  correlationId: string;
  /** The id of the start event: the end's causation. */
  startedEventId: string;
  startedAt: string;
  startedSeq: number;
  cmd?: string[];
  tty?: boolean;
  ports?: number[];
}

function open(event: LedgerEvent, kind: SessionKind, sessionId: string, startedAt: string): OpenSession {
  return {
    sessionId,
    kind,
    stream: event.stream,
    targetId: parseStream(event.stream).id,
    correlationId: event.correlationId,
    startedEventId: event.id,
    startedAt,
    startedSeq: event.seq,
  };
}

export const openSessions: Projection<OpenSession> = {
  name: 'sessions',

  keysOf(event) {
    switch (event.type) {
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
      case 'PortForwardStarted':
      case 'PortForwardEnded':
        return [event.data.sessionId];
      default:
        return [];
    }
  },

  evolve(doc, event) {
    switch (event.type) {
      case 'ExecStarted':
        return (
          doc ?? {
            ...open(event, 'exec', event.data.sessionId, event.data.startedAt),
            cmd: event.data.cmd,
            tty: event.data.tty,
          }
        );
      case 'AttachStarted':
        return doc ?? { ...open(event, 'attach', event.data.sessionId, event.data.startedAt), tty: event.data.tty };
      case 'PortForwardStarted':
        return (
          doc ?? { ...open(event, 'portforward', event.data.sessionId, event.data.startedAt), ports: event.data.ports }
        );
      case 'ExecEnded':
      case 'AttachEnded':
      case 'PortForwardEnded':
        return undefined;
      case 'NameReserved':
      case 'SpecGenerated':
      case 'SnapshotPrepared':
      case 'ContainerCreated':
      case 'HostPathCreated':
      case 'Compensated':
      case 'SandboxReserved':
      case 'SandboxReady':
      case 'SandboxStopped':
      case 'SandboxRemoved':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'ContainerRemoved':
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
      case 'ResultUndelivered':
      case 'RecoveryDecided':
        return doc;
      default:
        return assertNever(event);
    }
  },
};

/** The open sessions of one container or sandbox (by id), oldest first. */
export function sessionsOf(sessions: Iterable<OpenSession>, targetId: string): OpenSession[] {
  return [...sessions].filter((s) => s.targetId === targetId).sort((a, b) => a.startedSeq - b.startedSeq);
}
