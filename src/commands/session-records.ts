import { ConcurrencyError, FailedPreconditionError, NotFoundError } from '../domain/errors.js';
import type { EventData, NewEvent, SessionEndReason } from '../domain/events.js';
import { containerStream, sandboxStream } from '../domain/ids.js';
import type { OpenSession } from '../projections/open-sessions.js';
import type { KeyedLock } from './keyed-lock.js';
import type { Ledger } from './ledger.js';
import type { SessionPayload } from './ports.js';

/*
 * A streaming session on the record: its start when a client has used the URL and the
 * protocol is negotiated, its end however it came (docs/streaming.md). Exec and Attach
 * go to the container's stream, under the container's lifecycle lock so that they never
 * push a StopContainer or an exit record into a ConcurrencyError; PortForward goes to
 * the sandbox's stream. Both carry the correlation id of the CRI call that asked for the
 * URL, and the end names the start as its cause. Ending is idempotent: a session that is
 * not open (ended already, or never started) records nothing.
 */

export interface SessionRecordDeps {
  ledger: Ledger;
  /** The container lifecycle's lock (LifecycleDeps.locks). */
  locks: KeyedLock;
}

/** What the protocol server negotiated, and when the session began (ISO 8601). */
export interface SessionStart {
  transport: 'spdy' | 'websocket';
  /** `v5.channel.k8s.io`, `portforward.k8s.io`, ... */
  protocol: string;
  startedAt: string;
}

/** Bytes through one forwarded port. */
export type ForwardedPort = EventData['PortForwardEnded']['ports'][number];

/** How a session ended. Bytes are counted by the protocol server: in = from the client, out = to it. */
export interface SessionFinish {
  sessionId: string;
  reason: SessionEndReason;
  /** Exec: the process's exit code; Attach: the container's, if it exited. */
  exitCode?: number;
  /** Absent when nobody counted (startup recovery). */
  bytes?: { in: number; out: number };
  /** PortForward: per port. */
  ports?: ForwardedPort[];
  error?: string;
  endedAt: string;
}

/** Appends retry this often when another writer moved the stream between the read and the write. */
const APPEND_ATTEMPTS = 3;

function lockKey(stream: string, targetId: string): string {
  // The lifecycle commands lock a container by its bare id; sandboxes have no lock of their own.
  return stream.startsWith('container-') ? targetId : stream;
}

/**
 * Appends the event `build` returns (undefined: nothing to write) to `stream` under the
 * lock, at the stream's version then; true when it wrote. `build` runs under the lock,
 * so its checks and the append are one step for every writer that takes the lock.
 */
async function appendUnderLock(
  deps: SessionRecordDeps,
  stream: string,
  targetId: string,
  build: () => NewEvent | undefined,
): Promise<boolean> {
  return deps.locks.run(lockKey(stream, targetId), async () => {
    const event = build();
    if (!event) return false;
    for (let attempt = 1; ; attempt++) {
      // A removed container or sandbox has no record left: its stream's version is the log's.
      const version = await deps.ledger.log.streamVersion(stream);
      try {
        await deps.ledger.append(stream, version, [event]);
        return true;
      } catch (error) {
        // The sandbox's own commands take no lock: one may have written in between.
        if (!(error instanceof ConcurrencyError) || attempt >= APPEND_ATTEMPTS) throw error;
      }
    }
  });
}

/**
 * Records the start of a session whose client has connected. Refused (nothing recorded)
 * when the container is no longer running or the sandbox no longer ready, since the URL
 * was handed out: the handler then ends the connection with that error.
 */
export async function recordSessionStarted(
  deps: SessionRecordDeps,
  payload: SessionPayload,
  start: SessionStart,
): Promise<void> {
  const p = deps.ledger.projections;
  const opened = { transport: start.transport, protocol: start.protocol, startedAt: start.startedAt };
  const correlationId = payload.correlationId;
  if (payload.kind === 'portforward') {
    const data = { sessionId: payload.sessionId, ports: payload.ports, ...opened };
    await appendUnderLock(deps, sandboxStream(payload.sandboxId), payload.sandboxId, () => {
      const sandbox = p.sandboxes.get(payload.sandboxId);
      if (!sandbox) throw new NotFoundError('sandbox', payload.sandboxId);
      if (sandbox.state !== 'READY')
        throw new FailedPreconditionError(`sandbox ${sandbox.id} is ${sandbox.state}, not READY`);
      // A session id is used once; a second start of it (a bug upstream) records nothing.
      return p.sessions.get(payload.sessionId) ? undefined : { type: 'PortForwardStarted', correlationId, data };
    });
    return;
  }
  const streams = { stdin: payload.stdin, stdout: payload.stdout, stderr: payload.stderr };
  const audit = payload.auditRequestId ? { auditRequestId: payload.auditRequestId } : {};
  const event: NewEvent =
    payload.kind === 'exec'
      ? {
          type: 'ExecStarted',
          correlationId,
          data: { sessionId: payload.sessionId, cmd: payload.cmd, tty: payload.tty, streams, ...opened, ...audit },
        }
      : {
          type: 'AttachStarted',
          correlationId,
          data: { sessionId: payload.sessionId, tty: payload.tty, streams, ...opened, ...audit },
        };
  // Checked under the container's lock: a StopContainer or an exit record is not in between.
  await appendUnderLock(deps, containerStream(payload.containerId), payload.containerId, () => {
    const container = p.containers.get(payload.containerId);
    if (!container || container.state === 'CREATING') throw new NotFoundError('container', payload.containerId);
    if (container.state !== 'RUNNING')
      throw new FailedPreconditionError(`container ${container.id} is ${container.state}, not RUNNING`);
    return p.sessions.get(payload.sessionId) ? undefined : event;
  });
}

/** The end event of an open session, with the start as its cause. */
export function sessionEndedEvent(session: OpenSession, finish: SessionFinish): NewEvent {
  const envelope = { correlationId: session.correlationId, causationId: session.startedEventId };
  const head = { sessionId: session.sessionId, reason: finish.reason };
  const tail = {
    ...(finish.bytes ? { bytesIn: finish.bytes.in, bytesOut: finish.bytes.out } : {}),
    ...(finish.error ? { error: finish.error } : {}),
    endedAt: finish.endedAt,
    durationMs: Math.max(0, Date.parse(finish.endedAt) - Date.parse(session.startedAt)),
  };
  if (session.kind === 'portforward')
    return { ...envelope, type: 'PortForwardEnded', data: { ...head, ports: finish.ports ?? [], ...tail } };
  const data = { ...head, ...(finish.exitCode === undefined ? {} : { exitCode: finish.exitCode }), ...tail };
  return session.kind === 'exec'
    ? { ...envelope, type: 'ExecEnded', data }
    : { ...envelope, type: 'AttachEnded', data };
}

/** Records how a session ended; false (nothing written) when it is not open: ended already, or never started. */
export async function recordSessionEnded(deps: SessionRecordDeps, finish: SessionFinish): Promise<boolean> {
  const open = deps.ledger.projections.sessions.get(finish.sessionId);
  if (!open) return false;
  // Checked again under the lock: two enders (the client gone, the container exited) may race.
  return appendUnderLock(deps, open.stream, open.targetId, () => {
    const session = deps.ledger.projections.sessions.get(finish.sessionId);
    return session && sessionEndedEvent(session, finish);
  });
}
