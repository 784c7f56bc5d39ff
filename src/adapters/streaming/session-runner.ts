import type { Logger } from '../logging/logger.js';
import type { SessionEnd, SessionHandlers, SessionKind, SessionOpening } from './contracts.js';
import type { IdleTimer } from './idle-timer.js';
import { PortForwardSession } from './port-forward-session.js';
import type { RemoteCommandSession } from './remote-command-session.js';

type Session = RemoteCommandSession | PortForwardSession;

interface Running {
  readonly session: Session;
  readonly done: Promise<void>;
}

/**
 * Runs each session's handler and keeps the open ones, so the server can end them all
 * (idle timeout, shutdown). A handler that returns without ending its session has it
 * ended the way kubelet ends one when its executor returns nil: a remote command with
 * a Success status, a port forward by closing the connection. A handler that throws has
 * its session ended with the error (an InternalError status for a remote command).
 */
export class SessionRunner<P> {
  readonly #running = new Set<Running>();

  constructor(
    private readonly handlers: SessionHandlers<P>,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.#running.size;
  }

  run(kind: SessionKind, payload: P, session: Session, idle: IdleTimer, protocol: string): void {
    const log = this.logger.child({ session: kind, transport: session.transport, protocol });
    const entry: Running = { session, done: this.#drive(kind, payload, session, idle, log) };
    this.#running.add(entry);
    entry.done.then(
      () => this.#running.delete(entry),
      () => this.#running.delete(entry),
    );
  }

  /** An exec's client is opening its streams: tells the handlers, which may start getting ready. */
  opening(kind: SessionKind, payload: P, opening: SessionOpening): void {
    if (kind === 'exec') this.handlers.execOpening?.(payload, opening);
  }

  endAll(reason: SessionEnd): void {
    for (const { session } of this.#running) session.end(reason);
  }

  /** Waits for the handlers to return, at most `graceMs`. */
  async settle(graceMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    try {
      await Promise.race([Promise.allSettled([...this.#running].map((r) => r.done)), grace]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #drive(kind: SessionKind, payload: P, session: Session, idle: IdleTimer, log: Logger): Promise<void> {
    log.info('streaming session started');
    try {
      if (session instanceof PortForwardSession) await this.handlers.portForward(payload, session);
      else await (kind === 'attach' ? this.handlers.attach(payload, session) : this.handlers.exec(payload, session));
      if (session instanceof PortForwardSession) session.end('exited');
      else await session.finish({ exitCode: 0 });
    } catch (error) {
      log.warn({ err: error }, 'streaming session handler failed');
      if (session instanceof PortForwardSession) session.end('error');
      else await session.finish({ error: (error as Error)?.message ?? String(error) }).catch(() => undefined);
    } finally {
      idle.stop();
    }
    const reason = await session.closed;
    log.info({ reason, bytes: session.bytes() }, 'streaming session ended');
  }
}
