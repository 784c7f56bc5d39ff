import type { EventType, LedgerEvent, NewEvent } from '../domain/events.js';

/** `number`: the stream must be at exactly this version (0 = the stream has no events). */
export type ExpectedVersion = number | 'any';

/** Which events `readAll` returns. Ranges are inclusive; every filter narrows. */
export interface ReadAllOptions {
  fromSeq?: number;
  toSeq?: number;
  /** Stop before the first event recorded after this time (ISO 8601). */
  untilTime?: string;
  types?: readonly string[];
  streams?: readonly string[];
}

/** One stored record exactly as it is in the log, before decoding. */
export interface RawRecord {
  seq: number;
  json: string;
}

export interface FollowOptions {
  signal?: AbortSignal;
}

/** Called with each committed batch, in seq order, before its appenders resume. */
export type CommitListener = (events: readonly LedgerEvent[]) => void;

/**
 * The event log, the source of truth. Appends are atomic, durable before they resolve,
 * checked against the stream's expected version, and stamped with a gap-free `seq`.
 */
export interface EventLog {
  /** Appends `events` to `stream` if it is at `expectedVersion`; throws ConcurrencyError otherwise. */
  append(stream: string, expectedVersion: ExpectedVersion, events: readonly NewEvent[]): Promise<LedgerEvent[]>;
  /** Every event of one stream, in version order. */
  readStream(stream: string): Promise<LedgerEvent[]>;
  /** The log in seq order, decoded, streaming in bounded memory. */
  readAll(options?: ReadAllOptions): AsyncIterable<LedgerEvent>;
  /** The stored records in seq order without decoding them (verify, exact copies). */
  readRecords(options?: { fromSeq?: number; toSeq?: number }): AsyncIterable<RawRecord>;
  /** Catch up from `fromSeq`, then stay live: no gap and no duplicate at the switch. */
  follow(fromSeq: number, options?: FollowOptions): AsyncIterable<LedgerEvent>;
  /** `follow`, a stored chunk or a committed batch at a time, for consumers that batch (the relay). */
  followBatches(fromSeq: number, options?: FollowOptions): AsyncIterable<readonly LedgerEvent[]>;
  /** The seq of the last committed event (0 when the log is empty). */
  head(): number;
  /** The version of `stream` (0 when it has no events). */
  streamVersion(stream: string): Promise<number>;
  /** Subscribes to committed batches; returns the unsubscribe function. */
  onCommit(listener: CommitListener): () => void;
  /** A named durable position (the relay's outbox cursor); 0 when never written. */
  readCursor(name: string): Promise<number>;
  writeCursor(name: string, seq: number): Promise<void>;
  close(): Promise<void>;
}

/** The event types a filter may name; used to reject typos before reading. */
export type KnownEventType = EventType;
