import type { Logger } from 'pino';
import type { EventLog } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { DEFAULT_STREAM_NAME, validateStreamSettings, type StreamSettings } from './nats-stream-config.js';
import { RELAY_CURSOR } from './outbox-cursor.js';

/** Publishes awaiting their JetStream ack at once. */
export const DEFAULT_RELAY_WINDOW = 256;
/** How long one publish waits for its ack before the relay backs off and re-sends. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
/** Between reconnect attempts (nats.js), and the first retry after a failure (then doubling). */
export const DEFAULT_RECONNECT_WAIT_MS = 2_000;
export const DEFAULT_RETRY_BACKOFF_MAX_MS = 30_000;
/** A connect attempt (TCP + handshake) gives up after this, so an unreachable server delays start() only this long. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
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
  /** Defaults to DEFAULT_RELAY_WINDOW. */
  window?: number;
  logger: Logger;
  publishTimeoutMs?: number;
  reconnectWaitMs?: number;
  lagLogIntervalMs?: number;
  stopTimeoutMs?: number;
  /**
   * Called when the relay gives up for good: a StreamConfigMismatchError found after a
   * background (re)connect, when start() had already returned. The log keeps everything.
   */
  onFatal?: (error: Error) => void;
}

/** The options with every default filled in and checked. */
export interface ResolvedRelayOptions extends Required<Omit<NatsRelayOptions, 'stream' | 'onFatal'>> {
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
    lagLogIntervalMs: o.lagLogIntervalMs ?? DEFAULT_LAG_LOG_INTERVAL_MS,
    stopTimeoutMs: o.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS,
    onFatal: o.onFatal ?? (() => undefined),
  };
  for (const key of ['window', 'publishTimeoutMs', 'reconnectWaitMs', 'lagLogIntervalMs', 'stopTimeoutMs'] as const) {
    if (!Number.isInteger(r[key]) || r[key] < 1)
      throw new InvalidArgumentError(`nats.${key}`, `must be a positive integer, got ${r[key]}`);
  }
  return r;
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
}

/** The status to report when no NATS URL is configured: the log keeps everything. */
export async function disabledRelayStatus(log: EventLog): Promise<RelayStatus> {
  const cursor = await log.readCursor(RELAY_CURSOR);
  return { enabled: false, connected: false, cursor, head: log.head(), lag: Math.max(0, log.head() - cursor) };
}
