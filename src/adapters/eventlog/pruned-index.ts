import type { Level } from 'level';
import { CorruptRecordError } from '../../domain/errors.js';
import { SeqRanges, type SeqRange } from './seq-ranges.js';

/*
 * What retention removed from the LevelDB log, kept in the log itself so that readers,
 * a restart and an auditor all know (docs/event-log.md, "Retention"):
 *
 *   g!<from seq, 16 digits>   -> <to seq>        a range of removed seqs (merged when they touch)
 *   x!<stream>                -> tombstone JSON  one pruned stream: how much, which seqs, when
 *   y!<n, 16 digits>          -> <stream>        the n-th tombstone written: the newest are kept
 *   m!pruned                  -> summary JSON    totals, first and last prune, the newest removed seq
 *
 * They are written in the same synced batch as the deletes, so the store never has a
 * hole the ranges do not explain. The log's head and the time order of `at` survive a
 * prune of the newest events: open() takes the larger of the last stored seq and the
 * last removed one.
 */
const RANGE = 'g!';
const TOMBSTONE = 'x!';
const SUMMARY_KEY = 'm!pruned';
const TOMBSTONE_ORDER = 'y!';
/**
 * Tombstones kept, the newest: ~300 bytes each, so ~30 MB at most. Older ones go (their
 * holes stay covered by the seq ranges; only the per-stream detail is lost locally),
 * so the record of removals is bounded too, not only the events.
 */
export const DEFAULT_KEEP_TOMBSTONES = 100_000;
const SEQ_DIGITS = 16;

const rangeKey = (from: number): string => RANGE + String(from).padStart(SEQ_DIGITS, '0');
const orderKey = (n: number): string => TOMBSTONE_ORDER + String(n).padStart(SEQ_DIGITS, '0');

/** One pruned stream, as its tombstone records it. */
export interface Tombstone {
  stream: string;
  /** Versions 1..version are gone from the local log. */
  version: number;
  /** True when nothing of the stream is left locally. */
  complete: boolean;
  events: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  /** When the first and the last removed event were recorded. */
  firstAt: string;
  lastAt: string;
  /** When retention removed them (the last pass that touched the stream). */
  prunedAt: string;
  name?: string;
}

/** Totals of everything retention removed from this log. */
export interface PruneSummary {
  events: number;
  streams: number;
  bytes: number;
  /** Times of the first and the latest pass that removed something. */
  firstPrunedAt: string;
  lastPrunedAt: string;
  /** The highest removed seq and its event's time: the head and `at` order survive it. */
  maxSeq: number;
  maxSeqAt: string;
}

/** One stored event a pass removes. */
export interface RemovedRecord {
  seq: number;
  version: number;
  at: string;
  bytes: number;
  name?: string;
}

/** Tombstones a pass expires: the stored ones' deletes, and the number below which new ones are not kept. */
export interface Expiry {
  through: number;
  ops: PruneWrite['ops'];
  streams: Set<string>;
}

/** The batch operations one pass adds beside its deletes, and the state to commit after it. */
export interface PruneWrite {
  ops: Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }>;
  tombstones: Tombstone[];
  summary: PruneSummary;
  /** Undo of the in-memory ranges if the batch fails. */
  rollback: () => void;
}

export class PrunedIndex {
  private constructor(
    private readonly ranges: { current: SeqRanges },
    private summaryValue: PruneSummary | undefined,
  ) {}

  static async load(db: Level<string, string>): Promise<PrunedIndex> {
    const ranges: SeqRange[] = [];
    for await (const [key, value] of db.iterator({ gte: RANGE, lt: `${RANGE}\xff` })) {
      const from = Number(key.slice(RANGE.length));
      const to = Number(value);
      if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from)
        throw new CorruptRecordError(undefined, `bad pruned range ${key} -> ${value}`);
      ranges.push([from, to]);
    }
    const raw = await db.get(SUMMARY_KEY);
    let summary: PruneSummary | undefined;
    if (raw !== undefined) {
      try {
        summary = JSON.parse(raw) as PruneSummary;
      } catch (cause) {
        throw new CorruptRecordError(undefined, `bad ${SUMMARY_KEY} record`, { cause });
      }
    }
    return new PrunedIndex({ current: new SeqRanges(ranges) }, summary);
  }

  /** Whether every seq in [from, to] was removed by retention. */
  covers(from: number, to: number): boolean {
    return this.ranges.current.covers(from, to);
  }

  /** The highest removed seq (0 when none). */
  lastSeq(): number {
    return this.ranges.current.last();
  }

  summary(): PruneSummary | undefined {
    return this.summaryValue;
  }

  /** The removed seqs in [from, to], as ranges. */
  rangesWithin(from: number, to: number): SeqRange[] {
    return this.ranges.current.within(from, to);
  }

  countWithin(from: number, to: number): number {
    return this.ranges.current.countIn(from, to);
  }

  get rangeCount(): number {
    return this.ranges.current.size;
  }

  /** Every tombstone whose stream reserved one of `names`, oldest removal first (a full scan). */
  static async tombstonesNamed(db: Level<string, string>, names: readonly string[]): Promise<Tombstone[]> {
    const wanted = new Set(names);
    const out: Tombstone[] = [];
    for await (const [, raw] of db.iterator({ gte: TOMBSTONE, lt: `${TOMBSTONE}\xff` })) {
      const t = JSON.parse(raw) as Tombstone;
      if (t.name !== undefined && wanted.has(t.name)) out.push(t);
    }
    return out.sort((a, b) => a.lastSeq - b.lastSeq);
  }

  /**
   * The delete ops that expire the oldest tombstones once `added` new ones are written,
   * keeping the newest `keep` (the n-th tombstone is `y!<n>`, n from 1).
   */
  async expiring(db: Level<string, string>, added: number, keep: number): Promise<Expiry> {
    const before = this.summaryValue?.streams ?? 0;
    const through = before + added - keep;
    const expiry: Expiry = { through, ops: [], streams: new Set() };
    // Those stored already; the batch's own new ones past the limit are never written.
    const to = Math.min(through, before);
    if (to < 1) return expiry;
    const from = Math.max(1, before - keep + 1);
    for await (const [key, stream] of db.iterator({ gte: orderKey(from), lte: orderKey(to) })) {
      expiry.ops.push({ type: 'del', key }, { type: 'del', key: TOMBSTONE + stream });
      expiry.streams.add(stream);
    }
    return expiry;
  }

  static async tombstone(db: Level<string, string>, stream: string): Promise<Tombstone | undefined> {
    const raw = await db.get(TOMBSTONE + stream);
    return raw === undefined ? undefined : (JSON.parse(raw) as Tombstone);
  }

  /**
   * Marks the removed seqs as covered at once (a reader racing the batch must find its
   * holes explained), and returns the metadata to write in the same batch as the deletes.
   */
  prepare(
    removed: ReadonlyMap<string, { records: RemovedRecord[]; complete: boolean; before: Tombstone | undefined }>,
    prunedAt: string,
    expiry: Expiry = { through: 0, ops: [], streams: new Set() },
  ): PruneWrite {
    const saved = new SeqRanges(this.ranges.current.all());
    const seqs: number[] = [];
    const tombstones: Tombstone[] = [];
    // The expired go first: nothing below puts back what they delete.
    const ops: PruneWrite['ops'] = [...expiry.ops];
    let events = 0;
    let bytes = 0;
    let newStreams = 0;
    let maxSeq = this.summaryValue?.maxSeq ?? 0;
    let maxSeqAt = this.summaryValue?.maxSeqAt ?? prunedAt;
    for (const [stream, { records, complete, before }] of removed) {
      if (records.length === 0) continue;
      const first = records[0]!;
      const last = records[records.length - 1]!;
      const recordBytes = records.reduce((n, r) => n + r.bytes, 0);
      const name = before?.name ?? records.find((r) => r.name !== undefined)?.name;
      const t: Tombstone = {
        stream,
        version: last.version,
        complete,
        events: (before?.events ?? 0) + records.length,
        bytes: (before?.bytes ?? 0) + recordBytes,
        firstSeq: Math.min(before?.firstSeq ?? first.seq, first.seq),
        lastSeq: Math.max(before?.lastSeq ?? last.seq, last.seq),
        firstAt: before?.firstAt ?? first.at,
        lastAt: last.at,
        prunedAt,
        ...(name === undefined ? {} : { name }),
      };
      tombstones.push(t);
      const n = before ? undefined : (this.summaryValue?.streams ?? 0) + ++newStreams;
      const kept = n === undefined ? !expiry.streams.has(stream) : n > expiry.through;
      if (kept) ops.push({ type: 'put', key: TOMBSTONE + stream, value: JSON.stringify(t) });
      if (kept && n !== undefined) ops.push({ type: 'put', key: orderKey(n), value: stream });
      events += records.length;
      bytes += recordBytes;
      for (const r of records) {
        seqs.push(r.seq);
        if (r.seq > maxSeq) {
          maxSeq = r.seq;
          maxSeqAt = r.at;
        }
      }
    }
    const change = this.ranges.current.add(seqs);
    for (const [from] of change.removed) ops.push({ type: 'del', key: rangeKey(from) });
    for (const [from, to] of change.added) ops.push({ type: 'put', key: rangeKey(from), value: String(to) });
    const prev = this.summaryValue;
    const summary: PruneSummary = {
      events: (prev?.events ?? 0) + events,
      streams: (prev?.streams ?? 0) + newStreams,
      bytes: (prev?.bytes ?? 0) + bytes,
      firstPrunedAt: prev?.firstPrunedAt ?? prunedAt,
      lastPrunedAt: prunedAt,
      maxSeq,
      maxSeqAt,
    };
    ops.push({ type: 'put', key: SUMMARY_KEY, value: JSON.stringify(summary) });
    return { ops, tombstones, summary, rollback: () => (this.ranges.current = saved) };
  }

  /** Called once the batch is on disk. */
  committed(write: PruneWrite): void {
    this.summaryValue = write.summary;
  }
}
