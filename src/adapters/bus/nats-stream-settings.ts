import { InvalidArgumentError } from '../../domain/errors.js';
import { formatDurationMs } from './duration-format.js';

/*
 * The stream's settings as the config gives them, and their checks: no NATS client here,
 * so a service without a relay (and every CLI command) does not load one.
 */

/** The JetStream stream the relay publishes to when the config names none. */
export const DEFAULT_STREAM_NAME = 'CRI_LEDGER';
/**
 * How long JetStream remembers a Nats-Msg-Id. Longer than kubelet's 2-minute retry
 * horizon, so a relay that restarts and re-sends the tail it had not yet recorded as
 * acked is deduplicated by the server, not only by consumers.
 */
export const DEFAULT_DUPLICATE_WINDOW_MS = 10 * 60_000;
/** 0 keeps messages forever: the stream is an audit trail, pruning is an operator's call. */
export const DEFAULT_MAX_AGE_MS = 0;
/** 0 sets no byte limit (JetStream's -1): as with max age, pruning is an operator's call. */
export const DEFAULT_MAX_BYTES = 0;
export const DEFAULT_REPLICAS = 1;
/** JetStream's own limit on stream replicas. */
export const MAX_REPLICAS = 5;

/** The stream settings the relay needs; everything else is left at JetStream's defaults. */
export interface StreamSettings {
  name: string;
  node: string;
  replicas: number;
  duplicateWindowMs: number;
  maxAgeMs: number;
  /** 0 = unlimited. */
  maxBytes: number;
}

/** The limits of the stream as JetStream reports them, in the config's units (0 = unlimited). */
export interface StreamLimits {
  replicas: number;
  maxAgeMs: number;
  maxBytes: number;
  duplicateWindowMs: number;
}

/** Throws InvalidArgumentError for settings JetStream would refuse, before any connection. */
export function validateStreamSettings(s: StreamSettings): void {
  if (!/^[^\s.*>/\\]+$/.test(s.name))
    throw new InvalidArgumentError('nats.stream', `"${s.name}" is not a valid stream name`);
  if (!Number.isInteger(s.replicas) || s.replicas < 1 || s.replicas > MAX_REPLICAS) {
    throw new InvalidArgumentError('nats.replicas', `must be an integer from 1 to ${MAX_REPLICAS}, got ${s.replicas}`);
  }
  if (!(s.duplicateWindowMs > 0)) throw new InvalidArgumentError('nats.duplicateWindowMs', 'must be positive');
  if (!(s.maxAgeMs >= 0)) throw new InvalidArgumentError('nats.maxAgeMs', 'must be 0 (unlimited) or positive');
  if (!Number.isInteger(s.maxBytes) || s.maxBytes < 0)
    throw new InvalidArgumentError(
      'nats.maxBytes',
      `must be 0 (unlimited) or a positive whole number, got ${s.maxBytes}`,
    );
  if (s.maxAgeMs > 0 && s.duplicateWindowMs > s.maxAgeMs) {
    // JetStream refuses a dedupe window longer than the messages live.
    throw new InvalidArgumentError(
      'nats.duplicateWindowMs',
      `${formatDurationMs(s.duplicateWindowMs)} exceeds max age ${formatDurationMs(s.maxAgeMs)}`,
    );
  }
}
