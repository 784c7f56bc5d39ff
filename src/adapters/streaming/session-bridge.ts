import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type {
  AttachSessionPayload,
  ExecSessionPayload,
  PortForwardSessionPayload,
  SessionPayload,
} from '../../commands/ports.js';
import {
  type ForwardedPort,
  recordSessionEnded,
  recordSessionStarted,
  type SessionRecordDeps,
} from '../../commands/session-records.js';
import type { ContainerdAttach } from '../containerd/containerd-attach.js';
import type { ExecSession, ExecSessionRequest } from '../containerd/containerd-exec-session.js';
import { connectToPodPort } from '../netns/pod-port.js';
import type { RemoteCommandStreams, SessionEnd, SessionHandlers } from './contracts.js';

/*
 * Where a streaming session meets its backend and its record. Each handler records the
 * start (which checks again that the container runs, or the pod is ready), bridges the
 * client's streams to a containerd exec process, the container's own stdio, or
 * connections in the pod's network namespace, and records how it ended, once: the
 * process exited, the client went away, the idle timeout or a shutdown ended it. The
 * session's bytes go through and are counted; they are never recorded.
 */

export interface SessionBridgeDeps {
  records: SessionRecordDeps;
  startExec(containerId: string, request: ExecSessionRequest): Promise<ExecSession>;
  attach: Pick<ContainerdAttach, 'attachContainer'>;
  /** DEFAULT_ATTACH_EXIT_WAIT_MS unless set. */
  attachExitWaitMs?: number;
  logger: Logger;
}

/**
 * How long an attach that ended with the container's output waits for the container's exit
 * to be on the record, for its exit code: the task's exit event comes just after the FIFOs close.
 */
export const DEFAULT_ATTACH_EXIT_WAIT_MS = 2_000;
const EXIT_POLL_MS = 25;

const now = (): string => new Date().toISOString();
const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** An exec session's start under way: its record (the refusal, if refused) and its process. */
interface ExecStart {
  refusal: Promise<string | undefined>;
  launched: Promise<ExecSession>;
  abort: AbortController;
}

export function sessionHandlers(d: SessionBridgeDeps): SessionHandlers<SessionPayload> {
  /** Records the start; on refusal, answers the client with the reason and records nothing. */
  const started = async (
    payload: SessionPayload,
    streams: { transport: 'spdy' | 'websocket' },
    protocol: string,
    refuse: (error: string) => Promise<void>,
  ): Promise<boolean> => {
    try {
      await recordSessionStarted(d.records, payload, { transport: streams.transport, protocol, startedAt: now() });
      return true;
    } catch (error) {
      await refuse(message(error)).catch(() => undefined);
      return false;
    }
  };
  /**
   * Starts a session's backend; when it fails, records the error as the session's end and
   * answers it. With `refusal` (the start's recording, run alongside): a start that was
   * refused was recorded as nothing, and the client hears why.
   */
  const backend = async <T>(
    p: SessionPayload,
    streams: RemoteCommandStreams,
    start: () => Promise<T>,
    refusal?: Promise<string | undefined>,
  ): Promise<T | undefined> => {
    try {
      return await start();
    } catch (error) {
      const refused = await refusal;
      if (refused !== undefined) {
        await streams.finish({ error: refused }).catch(() => undefined);
        return undefined;
      }
      const text = message(error);
      await ended({ sessionId: p.sessionId, reason: 'error', error: text, bytes: streams.bytes(), endedAt: now() });
      await streams.finish({ error: text });
      return undefined;
    }
  };
  /** The container's exit code once ContainerExited is on the record; undefined if it is not within the wait. */
  const exitCodeOf = async (containerId: string): Promise<number | undefined> => {
    const deadline = Date.now() + (d.attachExitWaitMs ?? DEFAULT_ATTACH_EXIT_WAIT_MS);
    for (;;) {
      const container = d.records.ledger.projections.containers.get(containerId);
      if (container?.state === 'EXITED') return container.exitCode;
      if (!container || Date.now() >= deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, EXIT_POLL_MS));
    }
  };
  const ended = (finish: Parameters<typeof recordSessionEnded>[1]): Promise<void> =>
    recordSessionEnded(d.records, finish).then(
      () => undefined,
      (error: unknown) => d.logger.warn({ err: error, sessionId: finish.sessionId }, 'recording a session end failed'),
    );

  /**
   * Starts an exec session's record and its process side by side: the process is made in
   * containerd while the start is recorded, and runs only once the record is committed:
   * on the record before anything runs, without waiting for the log in series.
   *
   * Begun at the upgrade, a process without a tty starts while the client still opens its
   * streams (runc's exec is most of a round trip, and client-go opens them one after
   * another): its output waits in the FIFOs and our unread ends, its stdin read blocks
   * until bytes come, and its exit is kept until the streams are there. A tty process
   * waits for the streams, so its first terminal size comes before it runs. A client
   * that leaves before its streams are open aborts the start, which kills the process.
   */
  const beginExec = (
    p: ExecSessionPayload,
    start: { transport: 'spdy' | 'websocket'; protocol: string },
    streamsOpen?: Promise<void>,
  ): ExecStart => {
    const refusal = recordSessionStarted(d.records, p, { ...start, startedAt: now() }).then(
      () => undefined,
      (error: unknown) => message(error),
    );
    const gate = Promise.all([
      refusal.then((refused) => {
        if (refused !== undefined) throw new Error('the session start was not recorded');
      }),
      p.tty ? streamsOpen : undefined,
    ]);
    gate.catch(() => undefined); // a launch that fails first never awaits it
    const abort = new AbortController();
    const launched = d.startExec(p.containerId, {
      cmd: p.cmd,
      tty: p.tty,
      stdin: p.stdin,
      stdout: p.stdout,
      stderr: p.stderr && !p.tty,
      signal: abort.signal,
      execId: p.sessionId,
      startAfter: gate,
    });
    launched.catch(() => undefined); // awaited by exec(), or dropped with the client
    return { refusal, launched, abort };
  };
  /** Exec sessions begun at the upgrade (execOpening) whose streams are not all open yet. */
  const opening = new Map<string, ExecStart>();

  return {
    execOpening(payload, o) {
      const p = payload as ExecSessionPayload;
      const start = beginExec(p, o, o.opened);
      opening.set(p.sessionId, start);
      o.opened.catch(async () => {
        // The client left before opening its streams: the launch fails at its gate and
        // removes what it made; a recorded start gets its end.
        opening.delete(p.sessionId);
        start.abort.abort();
        if ((await start.refusal) === undefined)
          await ended({ sessionId: p.sessionId, reason: 'client-gone', bytes: { in: 0, out: 0 }, endedAt: now() });
      });
    },

    async exec(payload, streams) {
      const p = payload as ExecSessionPayload;
      const start = opening.get(p.sessionId) ?? beginExec(p, streams);
      opening.delete(p.sessionId);
      const session = await backend(p, streams, () => start.launched, start.refusal);
      if (!session) return;
      bridge(streams, session, (w, h) => session.resize(w, h));
      const outcome = await Promise.race([
        session.wait().then((r) => ({ exitCode: r.exitCode })),
        streams.closed.then((reason) => ({ reason })),
      ]);
      if ('exitCode' in outcome) {
        await streams.finish({ exitCode: outcome.exitCode });
        await ended({
          sessionId: p.sessionId,
          reason: 'exited',
          exitCode: outcome.exitCode,
          bytes: streams.bytes(),
          endedAt: now(),
        });
      } else {
        // The client is gone (or the session timed out, or the service stops): the process must not outlive it.
        start.abort.abort();
        await ended({ sessionId: p.sessionId, reason: outcome.reason, bytes: streams.bytes(), endedAt: now() });
      }
      await session.cleanup().catch((error: unknown) => d.logger.warn({ err: error }, 'cleaning up an exec failed'));
    },

    async attach(payload, streams) {
      const p = payload as AttachSessionPayload;
      if (!(await started(p, streams, streams.protocol, (error) => streams.finish({ error })))) return;
      const session = await backend(p, streams, () =>
        d.attach.attachContainer(p.containerId, {
          stdin: p.stdin,
          stdout: p.stdout,
          stderr: p.stderr && !p.tty,
          tty: p.tty,
          stdinOnce: p.stdinOnce,
        }),
      );
      if (!session) return;
      bridge(streams, session, (w, h) => session.resize(w, h));
      const outcome = await Promise.race([
        session.ended.then((end) => ({ end })),
        streams.closed.then((reason) => ({ reason })),
      ]);
      const reason: SessionEnd =
        'end' in outcome ? (outcome.end === 'container-exited' ? 'container-exited' : 'client-gone') : outcome.reason;
      if ('end' in outcome) await streams.finish({ exitCode: 0 });
      await session.detach().catch(() => undefined);
      const exitCode = reason === 'container-exited' ? await exitCodeOf(p.containerId) : undefined;
      await ended({
        sessionId: p.sessionId,
        reason,
        ...(exitCode === undefined ? {} : { exitCode }),
        bytes: streams.bytes(),
        endedAt: now(),
      });
    },

    async portForward(payload, streams) {
      const p = payload as PortForwardSessionPayload;
      let refusal: string | undefined;
      const refuse = async (error: string): Promise<void> => {
        refusal = error;
      };
      if (!(await started(p, streams, streams.protocol, refuse))) {
        // As containerd answers a forward to a pod that is gone: each request gets the reason
        // on its error stream, until the client leaves (or the idle timeout ends it).
        streams.onRequest(({ port, data, error }) => {
          error.end(forwardError(port, p.sandboxId, refusal));
          data.end();
          discard(data);
        });
        await streams.closed;
        return;
      }
      const perPort = new Map<number, ForwardedPort>();
      const stats = (port: number): ForwardedPort => {
        let s = perPort.get(port);
        if (!s) perPort.set(port, (s = { port, connections: 0, errors: 0, bytesIn: 0, bytesOut: 0 }));
        return s;
      };
      const open = new Set<Socket>();
      let closing = false;
      streams.onRequest(({ port, data, error }) => {
        const s = stats(port);
        // Every request counts, the failed ones too: `errors` says how many of them failed.
        s.connections++;
        connectToPodPort(p.hostNetwork ? undefined : p.netnsPath, port).then(
          (socket) => {
            open.add(socket);
            let broken: Error | undefined;
            socket.on('error', (e: Error) => (broken ??= e));
            data.on('data', (c: Buffer) => (s.bytesIn += c.length));
            socket.on('data', (c: Buffer) => (s.bytesOut += c.length));
            data.pipe(socket);
            socket.pipe(data);
            socket.on('close', () => {
              open.delete(socket);
              // pipe() ends `data` only after an orderly end: a connection the pod reset
              // would leave the client's request open for ever. Say why, as kubelet does.
              if (broken && !closing) {
                s.errors++;
                error.write(forwardError(port, p.sandboxId, broken));
              }
              if (!data.writableEnded) data.end();
              discard(data);
            });
          },
          (failure: unknown) => {
            s.errors++;
            error.end(forwardError(port, p.sandboxId, failure));
            data.end();
            discard(data);
          },
        );
      });
      const reason = await streams.closed;
      closing = true;
      for (const socket of open) socket.destroy();
      await ended({
        sessionId: p.sessionId,
        reason,
        bytes: streams.bytes(),
        ports: [...perPort.values()],
        endedAt: now(),
      });
    },
  };
}

/**
 * kubelet's text for a request that could not be forwarded, byte for byte: client-go shows
 * it as is (`error forwarding port 80 to pod <id>, uid : ...`). Behind CRI the pod is the
 * sandbox id and the uid is empty, as with containerd.
 */
function forwardError(port: number, sandboxId: string, failure: unknown): string {
  return `error forwarding port ${port} to pod ${sandboxId}, uid : ${message(failure)}`;
}

/**
 * Drops what the client still sends on a request whose pod side is gone. Left unread, it
 * would fill the request's buffer, and a full buffer pauses the whole connection: every
 * other request on it would stall.
 */
function discard(data: Readable): void {
  data.unpipe();
  data.resume();
}

/** Client stdin into the process, its output out to the client, resizes through. */
function bridge(
  streams: RemoteCommandStreams,
  session: { stdin?: Writable; stdout?: Readable; stderr?: Readable },
  resize: (width: number, height: number) => Promise<void>,
): void {
  const clientStdin = streams.stdin;
  if (clientStdin && session.stdin) {
    clientStdin.pipe(session.stdin);
    // Once the process's stdin is gone (EPIPE, closed), what the client still types is
    // dropped: left unread it would fill the stream and, over SPDY, pause the socket that
    // also carries the resizes and the other streams.
    session.stdin.once('error', () => discard(clientStdin));
    session.stdin.once('close', () => discard(clientStdin));
  } else clientStdin?.resume();
  // The protocol server ends its streams itself with finish(); the backends' streams end first.
  if (session.stdout && streams.stdout) session.stdout.pipe(streams.stdout, { end: false });
  if (session.stderr && streams.stderr) session.stderr.pipe(streams.stderr, { end: false });
  session.stdin?.on('error', () => undefined);
  streams.onResize(({ width, height }) => void resize(width, height).catch(() => undefined));
}
