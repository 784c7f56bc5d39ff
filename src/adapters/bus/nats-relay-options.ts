import type { Logger } from 'pino';
import type { EventLog } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import {
  DEFAULT_MAX_BYTES,
  DEFAULT_STREAM_NAME,
  validateStreamSettings,
  type StreamLimits,
  type StreamSettings,
} from './nats-stream-settings.js';
import { formatDurationMs } from './duration-format.js';
import { RELAY_CURSOR } from './outbox-cursor.js';

/** Publishes awaiting their JetStream ack at once. */
export const DEFAULT_RELAY_WINDOW = 256;
/** How long one publish waits for its ack before the relay backs off and re-sends. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
/** Between reconnect attempts (nats.js), and the first retry after a failure (then doubling). */
export const DEFAULT_RECONNECT_WAIT_MS = 2_000;
/** The ceiling the pause between failed rounds doubles up to. */
export const DEFAULT_RETRY_BACKOFF_MAX_MS = 30_000;
/** A connect attempt (TCP + handshake) gives up after this, so an unreachable server delays start() only this long. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/**
 * How often the client pings its server; two unanswered pings mark the connection stale
 * and it moves to another server. nats.js's 2-minute default left a relay on a frozen or
 * partitioned server for 4 minutes or more.
 */
export const DEFAULT_PING_INTERVAL_MS = 5_000;
/** How often a lagging relay logs its lag. */
export const DEFAULT_LAG_LOG_INTERVAL_MS = 10_000;
/** How long stop() waits for in-flight acks before it persists the cursor and closes. */
export const DEFAULT_STOP_TIMEOUT_MS = 2_000;

export interface NatsRelayOptions {
  log: EventLog;
  /** One URL or a comma-separated list (`nats://a:4222,nats://b:4222`). */
  servers: string;
  /** Defaults to DEFAULT_STREAM_NAME. */
  stream?: string;
  /** This node's subject token; its events are published under `cri-ledger.<node>.>`. */
  node: string;
  replicas: number;
  duplicateWindowMs: number;
  maxAgeMs: number;
  /** The stream's byte limit, 0 = unlimited (DEFAULT_MAX_BYTES). */
  maxBytes?: number;
  /** How far past the cursor (the last seq acked with none missing) the relay publishes; DEFAULT_RELAY_WINDOW. */
  window?: number;
  logger: Logger;
  publishTimeoutMs?: number;
  reconnectWaitMs?: number;
  retryBackoffMaxMs?: number;
  pingIntervalMs?: number;
  lagLogIntervalMs?: number;
  stopTimeoutMs?: number;
  /**
   * Called when the relay gives up for good: a StreamConfigMismatchError found after a
   * background (re)connect, when start() had already returned. The log keeps everything.
   */
  onFatal?: (error: Error) => void;
}

/** The options with every default filled in and checked. */
export interface ResolvedRelayOptions extends Required<Omit<NatsRelayOptions, 'stream' | 'onFatal' | 'maxBytes'>> {
  serverList: string[];
  stream: StreamSettings;
  onFatal: (error: Error) => void;
}

/** Fills in defaults; throws InvalidArgumentError naming the first bad option. */
export function resolveRelayOptions(o: NatsRelayOptions): ResolvedRelayOptions {
  const stream: StreamSettings = {
    name: o.stream ?? DEFAULT_STREAM_NAME,
    node: o.node,
    replicas: o.replicas,
    duplicateWindowMs: o.duplicateWindowMs,
    maxAgeMs: o.maxAgeMs,
    maxBytes: o.maxBytes ?? DEFAULT_MAX_BYTES,
  };
  validateStreamSettings(stream);
  const serverList = o.servers
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (serverList.length === 0) throw new InvalidArgumentError('nats.url', 'must name at least one server');
  if (o.node.length === 0) throw new InvalidArgumentError('node', 'must not be empty');
  const r: ResolvedRelayOptions = {
    ...o,
    serverList,
    stream,
    window: o.window ?? DEFAULT_RELAY_WINDOW,
    publishTimeoutMs: o.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS,
    reconnectWaitMs: o.reconnectWaitMs ?? DEFAULT_RECONNECT_WAIT_MS,
    retryBackoffMaxMs: o.retryBackoffMaxMs ?? DEFAULT_RETRY_BACKOFF_MAX_MS,
    pingIntervalMs: o.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    lagLogIntervalMs: o.lagLogIntervalMs ?? DEFAULT_LAG_LOG_INTERVAL_MS,
    stopTimeoutMs: o.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS,
    onFatal: o.onFatal ?? (() => undefined),
  };
  const positive = [
    'window',
    'publishTimeoutMs',
    'reconnectWaitMs',
    'retryBackoffMaxMs',
    'pingIntervalMs',
    'lagLogIntervalMs',
    'stopTimeoutMs',
  ] as const;
  for (const key of positive) {
    if (!Number.isInteger(r[key]) || r[key] < 1)
      throw new InvalidArgumentError(`nats.${key}`, `must be a positive integer, got ${r[key]}`);
  }
  if (r.retryBackoffMaxMs < r.reconnectWaitMs)
    throw new InvalidArgumentError('nats.retryBackoffMaxMs', 'must be at least reconnectWaitMs');
  return r;
}

/**
 * The relay's worst-case re-send: how long after an event's first publish the relay may
 * still send it again while it runs and NATS answers, so how long the stream's
 * duplicate_window must remember its id for JetStream to drop the copy.
 *
 * An event whose ack was lost (timeout, disconnect, leader change) is re-sent at the start
 * of the next round. Rounds fail one after another while the cluster is electing or
 * unreachable, and the pause between them doubles from reconnectWaitMs to
 * retryBackoffMaxMs. The horizon is the time from the first send to the first re-send
 * made at the ceiling: each failed round waits out its publish timeout and then its
 * pause (defaults: 5 s x 5 rounds + 2+4+8+16+30 s = 85 s). A failure that outlasts
 * this is an outage; the window is not sized for outages (consumers key on id).
 */
export function resendHorizonMs(o: {
  publishTimeoutMs: number;
  reconnectWaitMs: number;
  retryBackoffMaxMs: number;
}): number {
  let total = 0;
  let pause = o.reconnectWaitMs;
  for (;;) {
    total += o.publishTimeoutMs + Math.min(pause, o.retryBackoffMaxMs);
    if (pause >= o.retryBackoffMaxMs) return total;
    pause *= 2;
  }
}

/** The warning status() carries when the stream forgets ids sooner than the relay may re-send. */
export function duplicateWindowWarning(stream: string, limits: StreamLimits, horizonMs: number): string | undefined {
  if (limits.duplicateWindowMs >= horizonMs) return undefined;
  return (
    `stream ${stream} remembers message ids for ${formatDurationMs(limits.duplicateWindowMs)}, less than the relay's ` +
    `worst-case re-send of ${formatDurationMs(horizonMs)}: an event re-sent after failed rounds can be stored twice ` +
    "(consumers that key on id are not affected); raise nats.duplicateWindow and the stream's duplicate_window"
  );
}

/** What an operator needs to see whether NATS is keeping up. */
export interface RelayStatus {
  /** False when no NATS URL is configured. */
  enabled: boolean;
  connected: boolean;
  /** The last seq JetStream acked with nothing missing before it. */
  cursor: number;
  /** The log's last seq. */
  head: number;
  /** head - cursor: events the log holds that NATS may not have yet. */
  lag: number;
  /** The last failure seen (connect, stream check, publish); kept after recovery. */
  lastError?: string;
  lastPublishAt?: string;
  /** Failures seen since start (connect, stream check, publish), for metrics. */
  errors?: number;
  /** The servers nats.url lists. */
  servers?: string[];
  /** host:port of the server the relay is connected to now (absent while disconnected). */
  server?: string;
  /** The stream's limits as JetStream reported them at the last check (start, reconnect). */
  streamLimits?: StreamLimits;
  /** resendHorizonMs() of the relay's settings. */
  resendHorizonMs?: number;
  /** Problems worth an operator's attention that do not stop the relay. */
  warnings?: string[];
}

/** The status to report when no NATS URL is configured: the log keeps everything. */
export async function disabledRelayStatus(log: EventLog): Promise<RelayStatus> {
  const cursor = await log.readCursor(RELAY_CURSOR);
  return { enabled: false, connected: false, cursor, head: log.head(), lag: Math.max(0, log.head() - cursor) };
}
