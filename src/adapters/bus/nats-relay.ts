import { setTimeout as sleep } from 'node:timers/promises';
import { connect, ErrorCode, Events, type JetStreamClient, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { encodeEvent, type LedgerEvent } from '../../domain/events.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  duplicateWindowWarning,
  resendHorizonMs,
  resolveRelayOptions,
  type NatsRelayOptions,
  type RelayStatus,
  type ResolvedRelayOptions,
} from './nats-relay-options.js';
import { ensureStream, StreamConfigMismatchError, streamLimits, type StreamLimits } from './nats-stream-config.js';
import { nodeSubjects, subjectFor } from './nats-subject.js';
import { OutboxCursor } from './outbox-cursor.js';

export * from './nats-relay-options.js';

const UTF8 = new TextEncoder();

/**
 * The transactional outbox: follows the event log from the durable cursor and publishes
 * each event to JetStream in seq order, at most `window` awaiting their ack. Any publish
 * failure, disconnect or restart resumes from the cursor; JetStream's dedupe window (keyed
 * on Nats-Msg-Id = event id) drops what had already arrived. NATS is never in the way of
 * the log: while it is unreachable the relay only retries and reports its lag.
 */
export class NatsRelay {
  private readonly logger: Logger;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private connected = false;
  private needsEnsure = true;
  private inflight = 0;
  private stopping = false;
  private lastError: string | undefined;
  private errors = 0;
  private lastPublishAt: string | undefined;
  private server: string | undefined;
  private limits: StreamLimits | undefined;
  private readonly horizonMs: number;
  private round: AbortController | undefined;
  private readonly stopSignal = new AbortController();
  private waiters: Array<() => void> = [];
  private loop: Promise<void> = Promise.resolve();
  private lagTimer: NodeJS.Timeout | undefined;
  private cursor!: OutboxCursor;
  /** The last `window` acks, oldest first: what a round after an interruption re-sends. */
  private readonly recentAcks: Array<{ seq: number; at: number }> = [];
  /** A round was cut short (disconnect, failed publish): the next one re-sends the recent acks. */
  private interrupted = false;

  private constructor(private readonly o: ResolvedRelayOptions) {
    this.logger = o.logger.child({ component: 'nats-relay', stream: o.stream.name, node: o.node });
    this.horizonMs = resendHorizonMs(o);
  }

  /**
   * Starts relaying. Resolves even when NATS is unreachable (it keeps retrying in the
   * background; status() says connected:false with lastError). Rejects with
   * StreamConfigMismatchError when the server is reachable and the existing stream's
   * settings differ from the config, and with InvalidArgumentError for bad options.
   */
  static async start(o: NatsRelayOptions): Promise<NatsRelay> {
    const relay = new NatsRelay(resolveRelayOptions(o));
    relay.cursor = await OutboxCursor.load(o.log, (e) => relay.noteError(e, 'cannot persist the relay cursor'));
    try {
      await relay.connect();
      await relay.ensure();
    } catch (error) {
      if (error instanceof StreamConfigMismatchError) {
        await relay.closeConnection();
        throw error;
      }
      relay.noteError(error, 'NATS not ready; the log keeps the backlog, retrying in the background');
    }
    relay.loop = relay.run();
    relay.lagTimer = setInterval(() => {
      const s = relay.status();
      if (s.lag > 0) relay.logger.warn(s, 'relay lagging');
    }, relay.o.lagLogIntervalMs).unref();
    return relay;
  }

  status(): RelayStatus {
    const head = this.o.log.head();
    const cursor = this.cursor.value;
    const s: RelayStatus = {
      enabled: true,
      connected: this.connected,
      cursor,
      head,
      lag: Math.max(0, head - cursor),
      errors: this.errors,
      servers: this.o.serverList,
      resendHorizonMs: this.horizonMs,
    };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    if (this.lastPublishAt !== undefined) s.lastPublishAt = this.lastPublishAt;
    if (this.connected && this.server !== undefined) s.server = this.server;
    if (this.limits !== undefined) {
      s.streamLimits = this.limits;
      const warning = duplicateWindowWarning(this.o.stream.name, this.limits, this.horizonMs);
      if (warning !== undefined) s.warnings = [warning];
    }
    return s;
  }

  /** Stops following, waits (bounded) for in-flight acks, persists the cursor, closes. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.lagTimer);
    this.stopSignal.abort();
    this.round?.abort();
    this.notify();
    // One deadline for the loop (it may be inside a stream check that waits for a reply
    // lost to a disconnect) and the in-flight acks; what is unacked is re-sent next start.
    const timer = new AbortController();
    let expired = false;
    const deadline = sleep(this.o.stopTimeoutMs, undefined, { signal: timer.signal }).then(
      () => (expired = true),
      () => undefined,
    );
    await Promise.race([this.loop, deadline]);
    while (this.inflight > 0 && !expired) await Promise.race([this.changed(), deadline]);
    timer.abort();
    await this.cursor.flush();
    await this.closeConnection();
    this.logger.info(this.status(), 'relay stopped');
  }

  private async run(): Promise<void> {
    let backoffMs = this.o.reconnectWaitMs;
    while (!this.stopping && !this.halted) {
      try {
        if (this.nc === undefined) await this.connect();
        await this.whenConnected();
        if (this.stopping) return;
        // The first check gates publishing (the stream may not exist yet). Later ones, after
        // a reconnect or a failed round, run beside it: a stream check needs JetStream's meta
        // leader, a publish only the stream's, and after losing the server that led the meta
        // group the check waited out an election the publishes did not need.
        if (this.limits === undefined) await this.ensure();
        else this.checkInBackground();
        await this.publishRound();
        backoffMs = this.o.reconnectWaitMs;
      } catch (error) {
        if (this.stopping || this.halted) return;
        if (error instanceof StreamConfigMismatchError) return this.halt(error);
        this.noteError(error, 'relay interrupted; resuming from the cursor after a pause');
        this.needsEnsure = true;
        this.interrupted = true;
        // A publish that timed out on a live connection: the server may be frozen or cut
        // off from the cluster while its socket stays open. Try another server rather
        // than wait for the pings to call the connection stale.
        if (isTimeout(error) && this.connected) void this.nc?.reconnect().catch(() => undefined);
        await sleep(backoffMs, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
        backoffMs = Math.min(backoffMs * 2, this.o.retryBackoffMaxMs);
      }
    }
  }

  /** Publishes from the cursor until the round is aborted (disconnect, stop) or a publish fails. */
  private async publishRound(): Promise<void> {
    const js = this.js;
    if (js === undefined) throw new Error('NATS connection closed');
    const round = new AbortController();
    this.round = round;
    // stop() or a disconnect may have come while the stream was being checked.
    if (this.stopping || !this.connected) round.abort();
    let failure: unknown;
    // A failure ends the round; one from an earlier round (it timed out after a
    // disconnect) changes nothing, the current round re-sends that event anyway.
    const fail = (error: unknown): void => {
      if (this.round === round) failure ??= error;
      round.abort();
    };
    round.signal.addEventListener('abort', () => this.notify());
    try {
      // The window is a distance from the cursor, not a count of publishes awaiting their
      // ack: nothing past cursor + window is sent. Counting only the awaiting ones let a
      // publish lost to a dead or frozen leader wait out its timeout while hundreds after
      // it were acked and more sent, and its re-send landed 910 positions late; bounded by
      // distance, an event re-sent after a failure lands less than one window late.
      // Publishes issued in one tick go out in one socket write, so the relay takes the
      // log a batch at a time and, once the window is full, waits for it to half drain
      // rather than trickling one publish per ack.
      const window = this.o.window;
      const lowWater = Math.floor(window / 2);
      for await (const batch of this.o.log.followBatches(this.roundStart(), { signal: round.signal })) {
        for (const event of batch) {
          if (event.seq - this.cursor.value > window) {
            while (event.seq - this.cursor.value > lowWater && !round.signal.aborted) await this.changed();
          }
          if (round.signal.aborted) break;
          this.publish(js, event).catch(fail);
        }
        if (round.signal.aborted) break;
      }
    } finally {
      if (this.round === round) this.round = undefined;
    }
    if (failure !== undefined) throw failure;
    if (!round.signal.aborted) throw new Error('the event log stopped following (was it closed?)');
  }

  /**
   * Where a round starts: after the cursor, or, after an interruption, at the oldest of
   * the last `window` acks still young enough for the stream's dedupe window to drop it.
   * JetStream acks a publish once it is stored in the replicas' memory and writes it to
   * disk a moment later (nats-server#7564): with every replica killed at once, an event
   * acked just before can vanish (the fleet test's "all three killed" lost one in a full
   * suite run). Re-sending the recent acks costs duplicates JetStream drops; one it had
   * lost is stored again, less than a window late. An ack older than half the dedupe
   * window is not re-sent: the server may have forgotten its id, and would store it twice.
   */
  private roundStart(): number {
    const next = this.cursor.value + 1;
    if (!this.interrupted) return next;
    this.interrupted = false;
    const dedupeMs = this.limits?.duplicateWindowMs ?? this.o.stream.duplicateWindowMs;
    const youngest = Date.now() - dedupeMs / 2;
    let from = next;
    for (const a of this.recentAcks) if (a.at >= youngest && a.seq < from) from = a.seq;
    if (from < next) {
      this.logger.info(
        { from, cursor: this.cursor.value },
        're-sending the last acked events: JetStream may have lost what it acked before the interruption',
      );
    }
    return from;
  }

  private async publish(js: JetStreamClient, event: LedgerEvent): Promise<void> {
    this.inflight++;
    try {
      const ack = await js.publish(subjectFor(event, this.o.node), UTF8.encode(encodeEvent(event)), {
        msgID: event.id,
        timeout: this.o.publishTimeoutMs,
      });
      this.lastPublishAt = new Date().toISOString();
      this.cursor.ack(event.seq);
      // When it was stored, which is when the stream's dedupe window for it started; a
      // duplicate's ack says nothing new about that.
      if (!ack.duplicate) {
        this.recentAcks.push({ seq: event.seq, at: Date.now() });
        if (this.recentAcks.length > this.o.window) this.recentAcks.shift();
      }
    } finally {
      this.inflight--;
      this.notify();
    }
  }

  private async connect(): Promise<void> {
    const nc = await connect({
      servers: this.o.serverList,
      name: `cri-ledger-relay-${this.o.node}`,
      maxReconnectAttempts: -1,
      // A stack trace captured per request cost a tenth of the relay's CPU.
      noAsyncTraces: true,
      reconnectTimeWait: this.o.reconnectWaitMs,
      timeout: DEFAULT_CONNECT_TIMEOUT_MS,
      pingInterval: this.o.pingIntervalMs,
      maxPingOut: 2,
    });
    this.nc = nc;
    this.js = nc.jetstream();
    this.connected = true;
    this.needsEnsure = true;
    this.server = nc.getServer();
    this.logger.info({ server: this.server, ...this.status() }, 'NATS connected');
    // Runs for the connection's life; it only records state, so a failure in it is logged, not thrown.
    void this.watch(nc).catch((error: unknown) => this.noteError(error, 'watching the NATS connection failed'));
  }

  private checking = false;
  /** A background stream check found a mismatch: the run loop ends, stop() still cleans up. */
  private halted = false;

  /** ensure() without blocking the round; a mismatch halts the relay, other failures are retried next round. */
  private checkInBackground(): void {
    if (!this.needsEnsure || this.checking) return;
    this.checking = true;
    void this.ensure()
      .catch((error: unknown) => {
        if (this.stopping) return;
        if (error instanceof StreamConfigMismatchError) {
          this.halted = true;
          this.round?.abort();
          this.halt(error);
        } else this.noteError(error, 'stream check failed; publishing on, checking again next round');
      })
      .finally(() => (this.checking = false));
  }

  private async ensure(): Promise<void> {
    if (!this.needsEnsure || this.nc === undefined) return;
    const { done, config } = await ensureStream(await this.nc.jetstreamManager(), this.o.stream);
    if (done !== 'unchanged') this.logger.info({ subjects: nodeSubjects(this.o.node) }, `stream ${done}`);
    this.limits = streamLimits(config);
    const warning = duplicateWindowWarning(this.o.stream.name, this.limits, this.horizonMs);
    if (warning !== undefined) this.logger.warn({ resendHorizonMs: this.horizonMs, ...this.limits }, warning);
    this.needsEnsure = false;
  }

  /** Tracks the connection: a disconnect ends the round; a reconnect re-checks the stream. */
  private async watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then(
      (error) => {
        if (this.nc !== nc) return;
        // nats.js gave up (e.g. repeated auth failures): start over with a fresh connection.
        this.nc = undefined;
        this.js = undefined;
        this.connected = false;
        if (!this.stopping) this.noteError(error ?? new Error('NATS connection closed'), 'NATS connection closed');
        this.round?.abort();
        this.notify();
      },
      // closed() resolves, with the error that closed it; a rejection is logged like one.
      (error: unknown) => this.noteError(error, 'NATS connection closed'),
    );
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.connected = false;
        this.interrupted = true;
        this.round?.abort();
        this.logger.warn(this.status(), 'NATS disconnected; the log keeps the backlog');
      } else if (s.type === Events.Reconnect) {
        this.connected = true;
        this.needsEnsure = true;
        this.server = nc.getServer();
        this.logger.info({ server: this.server, ...this.status() }, 'NATS reconnected');
      } else if (s.type === Events.Error) {
        this.noteError(
          new Error(typeof s.data === 'string' ? s.data : JSON.stringify(s.data)),
          'NATS reported an error',
        );
      }
      this.notify();
    }
  }

  private async whenConnected(): Promise<void> {
    while (!this.connected && this.nc !== undefined && !this.stopping) await this.changed();
    if (this.nc === undefined && !this.stopping) throw new Error('NATS connection closed');
  }

  private halt(error: StreamConfigMismatchError): void {
    this.lastError = error.message;
    this.logger.error({ err: error }, 'relay halted: the stream does not match the config');
    // onFatal must hear of the halt now, not after the close; a failing close is only logged.
    void this.closeConnection().catch((closeError: unknown) =>
      this.noteError(closeError, 'closing the NATS connection failed'),
    );
    this.o.onFatal(error);
  }

  private async closeConnection(): Promise<void> {
    const nc = this.nc;
    this.nc = undefined;
    this.js = undefined;
    this.connected = false;
    // Everything worth flushing has been acked or given up on; close, don't drain.
    if (nc !== undefined && !nc.isClosed()) await nc.close().catch(() => undefined);
  }

  private noteError(error: unknown, message: string): void {
    this.errors++;
    const text = error instanceof Error ? error.message : String(error);
    // Repeating the same failure each retry would flood the log; the lag timer reports on.
    if (text !== this.lastError) this.logger.warn({ err: error, ...this.status() }, message);
    this.lastError = text;
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === ErrorCode.Timeout || code === ErrorCode.JetStream408RequestTimeout;
}
