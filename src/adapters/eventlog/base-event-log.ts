import type {
  CommitListener,
  EventLog,
  ExpectedVersion,
  FollowOptions,
  RawRecord,
  ReadAllOptions,
} from '../../commands/ports.js';
import { ConcurrencyError, CorruptRecordError, InvalidArgumentError, LedgerClosedError } from '../../domain/errors.js';
import {
  CURRENT_VERSION,
  decodeEvent,
  parseNewEvent,
  encodeEvent,
  type LedgerEvent,
  type NewEvent,
} from '../../domain/events.js';
import { newEventId } from '../ids/event-id.js';

/** Live events a follower may buffer before it falls back to reading the store. */
export const DEFAULT_FOLLOW_BUFFER_EVENTS = 10_000;

/** One committed batch, as metrics see it. */
export interface BatchStats {
  events: number;
  appends: number;
  /** The synced write of the batch (LevelDB's write with sync: the fsync). */
  writeMs: number;
  /** Per append in the batch: from append() to its commit. */
  appendMs: number[];
}

export interface EventLogOptions {
  node: string;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  newId?: () => string;
  /** Hears every committed batch (metrics); must not throw. */
  onBatch?: (stats: BatchStats) => void;
  /** The trace id of the traced call with this correlation id, if any (tracing). */
  traceId?: (correlationId: string) => string | undefined;
}

interface PendingAppend {
  /** performance.now() when append() was called. */
  queuedAt: number;
  stream: string;
  expected: ExpectedVersion;
  events: readonly NewEvent[];
  resolve: (events: LedgerEvent[]) => void;
  reject: (error: unknown) => void;
}

/**
 * The behaviour every EventLog adapter shares: validation, optimistic concurrency, seq
 * stamping, group commit, commit listeners, follow. A subclass only stores and reads.
 *
 * Group commit: appends that arrive while a batch is being written wait in `queue`; the
 * next batch takes all of them, so concurrent commands share one synced write.
 * Invariant: at most one batch is being written, so `head` and `versions` move forward
 * only in seq order and a failed batch can restore them exactly.
 */
export abstract class BaseEventLog implements EventLog {
  protected headSeq = 0;
  private lastAtMs = 0;
  private readonly versions = new Map<string, number>();
  /** True once `versions` holds every stream in the log: a stream not in it has version 0. */
  private versionsComplete = false;
  private queue: PendingAppend[] = [];
  /** The group-commit loop while it runs: close() waits for it instead of polling. */
  private writing: Promise<void> | undefined;
  private closed = false;
  private readonly listeners = new Set<CommitListener>();
  private readonly now: () => number;
  private readonly newId: () => string;

  protected constructor(protected readonly options: EventLogOptions) {
    this.now = options.now ?? Date.now;
    this.newId = options.newId ?? newEventId;
  }

  protected abstract loadStreamVersion(stream: string): Promise<number>;
  /** Writes one batch atomically and durably. `records[i]` encodes `events[i]`. */
  protected abstract writeBatch(events: readonly LedgerEvent[], records: readonly string[]): Promise<void>;
  protected abstract readStreamRecords(stream: string): Promise<RawRecord[]>;
  protected abstract closeStore(): Promise<void>;
  /** The stored records of a seq range, in order, a chunk at a time (bounded memory). */
  protected abstract readRecordChunks(range: { fromSeq: number; toSeq: number }): AsyncIterable<RawRecord[]>;
  abstract readCursor(name: string): Promise<number>;
  abstract writeCursor(name: string, seq: number): Promise<void>;

  /** Whether retention removed whole streams, whose versions only the store still knows. */
  protected hasPrunedStreams(): boolean {
    return false;
  }

  /** Seeds the last seq and time from the store; called once by the subclass's open. */
  protected setHead(seq: number, lastAtMs: number): void {
    this.headSeq = seq;
    this.lastAtMs = lastAtMs;
    this.versionsComplete = seq === 0;
  }

  head(): number {
    return this.headSeq;
  }

  async streamVersion(stream: string): Promise<number> {
    const cached = this.versions.get(stream);
    if (cached !== undefined) return cached;
    // A stream retention removed is in no scan, only in the store's record of the removal.
    if (this.versionsComplete && !this.hasPrunedStreams()) return 0;
    const loaded = await this.loadStreamVersion(stream);
    // A batch may have moved the stream while we were reading the store.
    const now = this.versions.get(stream);
    if (now !== undefined) return now;
    this.versions.set(stream, loaded);
    return loaded;
  }

  append(stream: string, expected: ExpectedVersion, events: readonly NewEvent[]): Promise<LedgerEvent[]> {
    if (this.closed) return Promise.reject(new LedgerClosedError());
    if (stream.length === 0) return Promise.reject(new InvalidArgumentError('stream', 'must not be empty'));
    if (events.length === 0)
      return Promise.reject(new InvalidArgumentError('events', 'an append needs at least one event'));
    let checked: NewEvent[];
    try {
      checked = events.map(parseNewEvent);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ queuedAt: performance.now(), stream, expected, events: checked, resolve, reject });
      this.writing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const pending = this.queue;
        this.queue = [];
        await this.commitBatch(pending);
      }
    } finally {
      this.writing = undefined;
    }
  }

  private async commitBatch(pending: PendingAppend[]): Promise<void> {
    try {
      await Promise.all([...new Set(pending.map((p) => p.stream))].map((s) => this.streamVersion(s)));
    } catch (error) {
      for (const p of pending) p.reject(error);
      return;
    }
    const before = new Map<string, number>();
    const accepted: Array<{ p: PendingAppend; stamped: LedgerEvent[] }> = [];
    const all: LedgerEvent[] = [];
    const records: string[] = [];
    let seq = this.headSeq;
    const atMs = Math.max(this.now(), this.lastAtMs);
    const at = new Date(atMs).toISOString();
    for (const p of pending) {
      const current = this.versions.get(p.stream) ?? 0;
      if (p.expected !== 'any' && p.expected !== current) {
        p.reject(new ConcurrencyError(p.stream, p.expected, current));
        continue;
      }
      if (!before.has(p.stream)) before.set(p.stream, current);
      let version = current;
      const stamped = p.events.map((e) =>
        stamp(e, {
          id: this.newId(),
          seq: ++seq,
          stream: p.stream,
          version: ++version,
          at,
          node: this.options.node,
          traceId: this.options.traceId?.(e.correlationId),
        }),
      );
      this.versions.set(p.stream, version);
      accepted.push({ p, stamped });
      for (const e of stamped) {
        all.push(e);
        records.push(encodeEvent(e));
      }
    }
    if (accepted.length === 0) return;
    const writeStarted = performance.now();
    try {
      await this.writeBatch(all, records);
    } catch (error) {
      for (const [stream, version] of before) this.versions.set(stream, version);
      for (const { p } of accepted) p.reject(error);
      return;
    }
    this.headSeq = seq;
    this.lastAtMs = atMs;
    for (const listener of this.listeners) listener(all);
    for (const { p, stamped } of accepted) p.resolve(stamped);
    if (this.options.onBatch) {
      const committed = performance.now();
      this.options.onBatch({
        events: all.length,
        appends: accepted.length,
        writeMs: committed - writeStarted,
        appendMs: accepted.map(({ p }) => committed - p.queuedAt),
      });
    }
  }

  onCommit(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async readStream(stream: string): Promise<LedgerEvent[]> {
    const records = await this.readStreamRecords(stream);
    return records.map((r) => decodeEvent(r.json, r.seq));
  }

  async *readRecords(options: { fromSeq?: number; toSeq?: number } = {}): AsyncIterable<RawRecord> {
    for await (const chunk of this.readRecordChunks(seqRange(options))) yield* chunk;
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<LedgerEvent> {
    const types = options.types && options.types.length > 0 ? new Set(options.types) : undefined;
    const streams = options.streams && options.streams.length > 0 ? new Set(options.streams) : undefined;
    const until = options.untilTime === undefined ? undefined : Date.parse(options.untilTime);
    if (until !== undefined && Number.isNaN(until)) {
      throw new InvalidArgumentError('untilTime', `"${options.untilTime}" is not a time`);
    }
    const range = seqRange(options);
    // A scan from seq 1 (the rebuild at startup) also learns every stream's version, so
    // later appends to new streams need no disk seek to find that they are at 0.
    const learn = !this.versionsComplete && range.fromSeq === 1;
    const headAtStart = this.headSeq;
    for await (const chunk of this.readRecordChunks(range)) {
      for (const record of chunk) {
        const event = decodeEvent(record.json, record.seq);
        if (learn && (this.versions.get(event.stream) ?? 0) < event.version)
          this.versions.set(event.stream, event.version);
        if (until !== undefined && Date.parse(event.at) > until) return;
        if (types && !types.has(event.type)) continue;
        if (streams && !streams.has(event.stream)) continue;
        yield event;
      }
    }
    // Read through to the head (retention may have removed its last events): every stream is known.
    if (learn && range.toSeq >= headAtStart) this.versionsComplete = true;
  }

  async *follow(fromSeq: number, options: FollowOptions = {}): AsyncIterable<LedgerEvent> {
    for await (const batch of this.followBatches(fromSeq, options)) yield* batch;
  }

  /**
   * Catch-up reads the store up to the head, a chunk at a time; once past it, the
   * follower takes committed batches from the commit listener. The switch has no await
   * between checking the head and going live, and listeners run in the same tick that
   * moves the head, so nothing falls between the two. A follower that lags by more than
   * DEFAULT_FOLLOW_BUFFER_EVENTS goes back to reading the store, so a slow consumer
   * costs disk reads, not memory.
   */
  async *followBatches(fromSeq: number, options: FollowOptions = {}): AsyncIterable<readonly LedgerEvent[]> {
    let next = Math.max(1, fromSeq);
    let live = false;
    let buffer: (readonly LedgerEvent[])[] = [];
    let buffered = 0;
    let wake: (() => void) | undefined;
    const signal = options.signal;
    const onAbort = (): void => wake?.();
    signal?.addEventListener('abort', onAbort);
    const unsubscribe = this.onCommit((events) => {
      if (!live) return;
      if (buffered + events.length > DEFAULT_FOLLOW_BUFFER_EVENTS) {
        live = false;
        buffer = [];
        buffered = 0;
      } else if (events.length > 0) {
        buffer.push(events);
        buffered += events.length;
      }
      wake?.();
    });
    try {
      while (!signal?.aborted && !this.closed) {
        if (!live) {
          if (next <= this.headSeq) {
            const to = this.headSeq;
            for await (const chunk of this.readRecordChunks({ fromSeq: next, toSeq: to })) {
              if (chunk.length === 0) continue;
              yield chunk.map((r) => decodeEvent(r.json, r.seq));
              next = chunk[chunk.length - 1]!.seq + 1;
              if (signal?.aborted) return;
            }
            // The read got to `to`: seqs after the last record it found were removed by
            // retention (the adapter refuses any other hole), so none is left to wait for.
            next = Math.max(next, to + 1);
            continue;
          }
          live = true;
        }
        const batch = buffer.shift();
        if (batch === undefined) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          continue;
        }
        buffered -= batch.length;
        const fresh = batch[0]!.seq >= next ? batch : batch.filter((e) => e.seq >= next);
        if (fresh.length === 0) continue;
        if (fresh[0]!.seq !== next)
          throw new CorruptRecordError(next, `follow expected seq ${next}, got ${fresh[0]!.seq}`);
        yield fresh;
        next = fresh[fresh.length - 1]!.seq + 1;
      }
    } finally {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    const rejected = this.queue;
    this.queue = [];
    for (const p of rejected) p.reject(new LedgerClosedError());
    this.listeners.forEach((l) => l([]));
    await this.closeStore();
  }
}

/** Builds the stored envelope with keys in the schema's order, so decode(encode(e)) re-encodes identically. */
function seqRange(options: { fromSeq?: number; toSeq?: number }): { fromSeq: number; toSeq: number } {
  return {
    fromSeq: Math.max(1, options.fromSeq ?? 1),
    toSeq: Math.min(options.toSeq ?? Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  };
}

function stamp(
  e: NewEvent,
  f: {
    id: string;
    seq: number;
    stream: string;
    version: number;
    at: string;
    node: string;
    traceId?: string | undefined;
  },
): LedgerEvent {
  const traced = f.traceId === undefined ? {} : { traceId: f.traceId };
  return {
    id: f.id,
    seq: f.seq,
    stream: f.stream,
    version: f.version,
    type: e.type,
    v: CURRENT_VERSION[e.type],
    at: f.at,
    node: f.node,
    correlationId: e.correlationId,
    causationId: e.causationId ?? null,
    ...traced,
    data: e.data,
  } as LedgerEvent;
}
