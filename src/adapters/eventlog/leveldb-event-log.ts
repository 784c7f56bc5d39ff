import { mkdir, readdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import type { RawRecord } from '../../commands/ports.js';
import {
  CorruptRecordError,
  InvalidArgumentError,
  LedgerLockedError,
  MissingRecordError,
} from '../../domain/errors.js';
import { decodeEvent, type LedgerEvent } from '../../domain/events.js';
import { BaseEventLog, type EventLogOptions } from './base-event-log.js';
import {
  DEFAULT_KEEP_TOMBSTONES,
  PrunedIndex,
  type PruneSummary,
  type RemovedRecord,
  type Tombstone,
} from './pruned-index.js';
import { LedgerStorageError, storageError } from './storage-errors.js';

/*
 * Key layout (one LevelDB, utf8 keys and values). Each read the service needs is one
 * range scan:
 *
 *   e!<seq, 16 digits>                    -> envelope JSON     the whole log, in seq order
 *   s!<stream>\x00<version, 10 digits>    -> envelope JSON     one stream, in version order
 *   c!<name>                              -> seq               durable cursors (the relay's outbox)
 *   m!layout                              -> "1" or "2"        the key layout's version
 *   g!, x!, m!pruned                      -> what retention removed (pruned-index.ts; layout 2)
 *
 * The envelope is stored under both keys in one synced batch, so they never disagree.
 *
 * A failed write (a full disk, an I/O error) poisons the open handle: LevelDB has by then
 * appended part of the record to its write-ahead log and keeps appending after it, and
 * at the next open the reader drops everything after the cut record, so writes
 * acknowledged later would be lost (test/int/leveldb-disk-full.int.test.ts shows it
 * without this). So after a failed write the handle is closed and opened again before
 * anything else is written: the open recovers the log up to its last whole record and
 * starts a fresh one. That open writes the log's records into a table, so it is tried
 * only once the disk has room for them: until then writes fail with LedgerDiskFullError,
 * nothing is stored, and reads go on through the old handle.
 */
const LOG = 'e!';
const STREAM = 's!';
const CURSOR = 'c!';
const LAYOUT_KEY = 'm!layout';
const LAYOUT_VERSION = '1';
/** Written by the first prune: a build that does not know retention's holes must not read the log. */
const PRUNED_LAYOUT_VERSION = '2';
const READABLE_LAYOUTS: ReadonlySet<string> = new Set([LAYOUT_VERSION, PRUNED_LAYOUT_VERSION]);
const SEQ_DIGITS = 16;
const VERSION_DIGITS = 10;
/**
 * Table files LevelDB keeps open. Open tables stay memory-mapped, so with LevelDB's
 * default (1,000) a full scan of a large log leaves every table it read mapped: a
 * million-event rebuild held ~240 MB of file pages in RSS. 64 bounds that to ~100 MB.
 */
export const DEFAULT_MAX_OPEN_FILES = 64;
/** LevelDB's table file size: with at most 64 tables open (and mapped), 512 KiB files keep a scan's mapped pages near 32 MiB. */
export const DEFAULT_TABLE_FILE_BYTES = 512 * 1024;
/** Free space beyond the write-ahead log's size that a reopen after a failed write waits for. */
export const REOPEN_MARGIN_BYTES = 256 * 1024;
/** Records fetched per iterator round trip while scanning. */
export const DEFAULT_SCAN_CHUNK_RECORDS = 1_000;
/**
 * Bytes one iterator round trip may carry. LevelDB's binding stops a `nextv` at 16 KiB
 * by default, so a scan of an 80 MB log made some 5,000 trips to the thread pool, each
 * with its own wait; 1 MiB gives whole chunks of ordinary events.
 */
export const DEFAULT_SCAN_CHUNK_BYTES = 1024 * 1024;
/** Chunks a scan keeps requested ahead of the one being decoded (bounded memory: a few MB). */
export const DEFAULT_SCAN_READ_AHEAD_CHUNKS = 4;

const seqKey = (seq: number): string => LOG + String(seq).padStart(SEQ_DIGITS, '0');
const streamPrefix = (stream: string): string => `${STREAM}${stream}\x00`;
const streamKey = (stream: string, version: number): string =>
  streamPrefix(stream) + String(version).padStart(VERSION_DIGITS, '0');

/** Remove up to `limit` of the oldest events of `stream`. */
export interface PruneRequest {
  stream: string;
  limit: number;
}

/** What one prune removed of a stream, and its tombstone after it. */
export interface PrunedStream {
  tombstone: Tombstone;
  events: number;
  /** Stored JSON bytes (one copy). */
  bytes: number;
}

export interface LevelDbEventLogOptions extends EventLogOptions {
  dir: string;
  /** Tombstones of pruned streams kept, the newest (default DEFAULT_KEEP_TOMBSTONES). */
  keepTombstones?: number;
}

/** The EventLog on an embedded LevelDB directory, held by one process at a time. */
export class LevelDbEventLog extends BaseEventLog {
  /** The error of a write that failed on the open handle: it must be reopened before the next write. */
  private failedWrite: unknown;
  private reopening: Promise<void> | undefined;
  private closing = false;
  /** Set when a reopen found events past the head: no write is safe until a restart. */
  private diverged: LedgerStorageError | undefined;

  private constructor(
    private readonly db: Level<string, string>,
    options: LevelDbEventLogOptions,
    private readonly pruned: PrunedIndex,
  ) {
    super(options);
  }

  /**
   * Opens (creating if needed) the log in `options.dir`. Fails fast with
   * LedgerLockedError when another process, or another handle in this one, holds it.
   */
  static async open(options: LevelDbEventLogOptions): Promise<LevelDbEventLog> {
    await mkdir(options.dir, { recursive: true });
    const db = new Level<string, string>(options.dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'utf8',
      maxOpenFiles: DEFAULT_MAX_OPEN_FILES,
      maxFileSize: DEFAULT_TABLE_FILE_BYTES,
    });
    try {
      await db.open();
    } catch (error) {
      if (isLockError(error)) throw new LedgerLockedError(options.dir, { cause: error });
      throw isIoError(error) ? storageError(options.dir, error) : error;
    }
    try {
      const layout = await db.get(LAYOUT_KEY);
      if (layout === undefined)
        await db
          .put(LAYOUT_KEY, LAYOUT_VERSION, { sync: true })
          .catch((error: unknown) => Promise.reject(storageError(options.dir, error)));
      else if (!READABLE_LAYOUTS.has(layout)) {
        throw new CorruptRecordError(
          undefined,
          `key layout ${layout} in ${options.dir}; this build reads layouts ${[...READABLE_LAYOUTS].join(' and ')}`,
        );
      }
      const pruned = await PrunedIndex.load(db);
      const log = new LevelDbEventLog(db, options, pruned);
      const last = await lastEntry(db, LOG, seqKey(Number.MAX_SAFE_INTEGER));
      // Retention may have removed the newest events: the head and the time order stay theirs.
      const removed = pruned.summary();
      const removedAtMs = removed ? Date.parse(removed.maxSeqAt) : 0;
      if (last) {
        const seq = Number(last[0].slice(LOG.length));
        const event = decodeEvent(last[1], seq);
        log.setHead(Math.max(seq, pruned.lastSeq()), Math.max(Date.parse(event.at), removedAtMs));
      } else {
        log.setHead(pruned.lastSeq(), removedAtMs);
      }
      return log;
    } catch (error) {
      await db.close();
      throw error;
    }
  }

  /** Waits for a reopen in progress; reopens a handle a failed reopen left closed. */
  private async readable(): Promise<void> {
    await this.reopening?.catch(() => undefined);
    if (this.db.status !== 'open' && this.failedWrite !== undefined && !this.closing) await this.reopen();
  }

  /** Reopens the handle first if a write failed on it (see the top of this file). */
  private async writable(): Promise<void> {
    await this.reopening?.catch(() => undefined);
    if (this.diverged) throw this.diverged;
    if (this.failedWrite === undefined) return;
    if (this.db.status === 'open' && !(await this.roomToReopen())) throw storageError(this.dir, this.failedWrite);
    await this.reopen();
  }

  /** Whether the disk has room for the table an open makes of the write-ahead log. */
  private async roomToReopen(): Promise<boolean> {
    try {
      const fs = await statfs(this.dir);
      let logBytes = 0;
      for (const name of await readdir(this.dir)) {
        if (name.endsWith('.log')) logBytes += (await stat(join(this.dir, name))).size;
      }
      return fs.bavail * fs.bsize >= logBytes + REOPEN_MARGIN_BYTES;
    } catch {
      return true; // Cannot tell: let the open decide.
    }
  }

  private reopen(): Promise<void> {
    this.reopening ??= (async () => {
      try {
        if (this.db.status === 'open') await this.db.close();
        await this.db.open();
      } catch (error) {
        throw storageError(this.dir, error);
      }
      // A write whose sync failed may still have reached the disk: then the store holds
      // events its appenders were told failed, at seqs this process would hand out
      // again. Never overwrite them: refuse every write until a restart loads them (its
      // recovery ends the sagas they began).
      const last = await lastEntry(this.db, LOG, seqKey(Number.MAX_SAFE_INTEGER));
      const stored = Math.max(last ? Number(last[0].slice(LOG.length)) : 0, this.pruned.lastSeq());
      if (stored !== this.headSeq) {
        throw (this.diverged = new LedgerStorageError(
          this.dir,
          `a write reported as failed was stored after all (the log ends at seq ${stored}, this process is at ${this.headSeq}); restart the service to load it`,
        ));
      }
      this.failedWrite = undefined;
    })().finally(() => (this.reopening = undefined));
    return this.reopening;
  }

  /** Runs a write; a failure poisons the handle and is reported as a storage error. */
  private async write(action: () => Promise<void>): Promise<void> {
    await this.writable();
    try {
      await action();
    } catch (error) {
      if (this.closing) throw error;
      this.failedWrite = error;
      throw storageError(this.dir, error);
    }
  }

  private get dir(): string {
    return (this.options as LevelDbEventLogOptions).dir;
  }

  protected override hasPrunedStreams(): boolean {
    return this.pruned.summary() !== undefined;
  }

  protected async loadStreamVersion(stream: string): Promise<number> {
    await this.readable();
    const prefix = streamPrefix(stream);
    const last = await lastEntry(this.db, prefix, prefix + '\xff');
    if (last) return Number(last[0].slice(prefix.length));
    // A stream retention removed whole keeps its version: a late append continues it.
    return (await PrunedIndex.tombstone(this.db, stream))?.version ?? 0;
  }

  protected async writeBatch(events: readonly LedgerEvent[], records: readonly string[]): Promise<void> {
    await this.write(async () => {
      const batch = this.db.batch();
      events.forEach((e, i) => {
        const json = records[i]!;
        batch.put(seqKey(e.seq), json);
        batch.put(streamKey(e.stream, e.version), json);
      });
      await batch.write({ sync: true });
    });
  }

  protected async readStreamRecords(stream: string): Promise<RawRecord[]> {
    await this.readable();
    const prefix = streamPrefix(stream);
    const out: RawRecord[] = [];
    for await (const [, json] of this.db.iterator({ gt: prefix, lt: prefix + '\xff' })) {
      out.push({ seq: seqOf(json), json });
    }
    return out;
  }

  protected async *readRecordChunks(range: { fromSeq: number; toSeq: number }): AsyncIterable<RawRecord[]> {
    if (range.fromSeq > range.toSeq) return;
    const iterator = this.db.iterator({
      gte: seqKey(range.fromSeq),
      lte: seqKey(range.toSeq),
      highWaterMarkBytes: DEFAULT_SCAN_CHUNK_BYTES,
    });
    let expected = range.fromSeq;
    // Read ahead: LevelDB's thread fetches the next chunks back to back (one iterator
    // takes one request at a time, so they are chained) while this one is decoded; a
    // few chunks of slack keep it busy through a slow decode.
    let chain: Promise<unknown> = Promise.resolve();
    let ended = false;
    const request = (): Promise<Array<[string, string]>> => {
      const fetched = chain
        .then(() => (ended ? [] : iterator.nextv(DEFAULT_SCAN_CHUNK_RECORDS)))
        .then((entries) => {
          if (entries.length === 0) ended = true;
          return entries;
        });
      chain = fetched.catch(() => undefined);
      fetched.catch(() => undefined); // awaited in order below; not an unhandled rejection meanwhile
      return fetched;
    };
    const ahead = Array.from({ length: DEFAULT_SCAN_READ_AHEAD_CHUNKS }, request);
    try {
      for (;;) {
        const entries = await ahead.shift()!;
        if (entries.length === 0) return;
        ahead.push(request());
        const chunk: RawRecord[] = [];
        for (const [key, json] of entries) {
          const seq = Number(key.slice(LOG.length));
          // A hole in the seq range means a lost record: say where, never skip it. Only
          // the holes retention made and recorded are stepped over.
          if (seq !== expected && !this.pruned.covers(expected, seq - 1)) {
            yield chunk;
            throw new MissingRecordError(expected, seq);
          }
          expected = seq + 1;
          chunk.push({ seq, json });
        }
        yield chunk;
      }
    } finally {
      ended = true;
      await chain;
      await iterator.close();
    }
  }

  /**
   * Removes up to `limit` of the oldest events of each stream (the caller has checked
   * that they may go: see src/commands/retention-policy.ts), with the record of what was
   * removed, in one synced batch. Returns each stream's tombstone as written.
   */
  async prune(requests: readonly PruneRequest[], prunedAt: string): Promise<PrunedStream[]> {
    await this.readable();
    const removed = new Map<string, { records: RemovedRecord[]; complete: boolean; before: Tombstone | undefined }>();
    const deletes: string[] = [];
    for (const { stream, limit } of requests) {
      if (limit <= 0 || removed.has(stream)) continue;
      const prefix = streamPrefix(stream);
      // One more than the limit says whether anything of the stream stays.
      const entries = await this.db.iterator({ gt: prefix, lt: prefix + '\xff', limit: limit + 1 }).all();
      const taken = entries.slice(0, limit);
      if (taken.length === 0) continue;
      const records = taken.map(([key, json]) => {
        const event = decodeEvent(json);
        deletes.push(key, seqKey(event.seq));
        const name = event.type === 'NameReserved' || event.type === 'SandboxReserved' ? { name: event.data.name } : {};
        return { seq: event.seq, version: Number(key.slice(prefix.length)), at: event.at, bytes: json.length, ...name };
      });
      const before = await PrunedIndex.tombstone(this.db, stream);
      removed.set(stream, { records, complete: entries.length <= limit, before });
    }
    if (removed.size === 0) return [];
    const added = [...removed.values()].filter((r) => r.before === undefined).length;
    const keep = (this.options as LevelDbEventLogOptions).keepTombstones ?? DEFAULT_KEEP_TOMBSTONES;
    const write = this.pruned.prepare(removed, prunedAt, await this.pruned.expiring(this.db, added, keep));
    try {
      await this.write(async () => {
        const batch = this.db.batch();
        for (const key of deletes) batch.del(key);
        for (const op of write.ops) {
          if (op.type === 'del') batch.del(op.key);
          else batch.put(op.key, op.value);
        }
        batch.put(LAYOUT_KEY, PRUNED_LAYOUT_VERSION);
        await batch.write({ sync: true });
      });
    } catch (error) {
      write.rollback();
      throw error;
    }
    this.pruned.committed(write);
    return write.tombstones.map((tombstone) => {
      const records = removed.get(tombstone.stream)!.records;
      return { tombstone, events: records.length, bytes: records.reduce((n, r) => n + r.bytes, 0) };
    });
  }

  /**
   * Lets LevelDB reclaim the space of the removed `e!` keys now rather than at some later
   * compaction, so the size rule measures what the pass freed: without it the directory
   * stayed ~60% over the limit and the rule removed 3x more than needed (bench
   * retention). The `s!` keys of pruned streams are spread over the whole stream range
   * (ids are random); compacting each stream's range flushed the memtable per stream
   * (passes of 13 s), so those go with LevelDB's own compactions.
   */
  async compactPruned(tombstones: readonly Tombstone[]): Promise<void> {
    if (tombstones.length === 0) return;
    await this.readable();
    const first = Math.min(...tombstones.map((t) => t.firstSeq));
    const last = Math.max(...tombstones.map((t) => t.lastSeq));
    // classic-level has it; the `level` facade's types leave it out.
    const db = this.db as unknown as { compactRange(start: string, end: string): Promise<void> };
    await db.compactRange(seqKey(first), seqKey(last));
  }

  /** Totals of what retention removed; undefined when it never removed anything. */
  prunedSummary(): PruneSummary | undefined {
    return this.pruned.summary();
  }

  /** The removed seqs between `fromSeq` and `toSeq`, as ranges, and how many there are. */
  prunedWithin(fromSeq: number, toSeq: number): { ranges: Array<readonly [number, number]>; events: number } {
    return { ranges: this.pruned.rangesWithin(fromSeq, toSeq), events: this.pruned.countWithin(fromSeq, toSeq) };
  }

  /** What retention removed of `stream`, if anything. */
  async tombstone(stream: string): Promise<Tombstone | undefined> {
    await this.readable();
    return PrunedIndex.tombstone(this.db, stream);
  }

  /** The tombstones of pruned streams that reserved one of `names`. */
  async tombstonesNamed(names: readonly string[]): Promise<Tombstone[]> {
    await this.readable();
    return PrunedIndex.tombstonesNamed(this.db, names);
  }

  /** The size of the log's directory on disk, in bytes. */
  async diskBytes(): Promise<number> {
    let total = 0;
    for (const name of await readdir(this.dir)) {
      try {
        total += (await stat(join(this.dir, name))).size;
      } catch {
        // Removed by a compaction meanwhile.
      }
    }
    return total;
  }

  async readCursor(name: string): Promise<number> {
    await this.readable();
    const value = await this.db.get(CURSOR + name);
    return value === undefined ? 0 : Number(value);
  }

  /** Not synced: a cursor lost in a machine crash only re-publishes what dedupe drops. */
  async writeCursor(name: string, seq: number): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InvalidArgumentError('seq', `bad cursor position ${seq}`);
    await this.write(() => this.db.put(CURSOR + name, String(seq)));
  }

  protected async closeStore(): Promise<void> {
    this.closing = true;
    await this.reopening?.catch(() => undefined);
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close();
  }
}

async function lastEntry(db: Level<string, string>, gte: string, lt: string): Promise<[string, string] | undefined> {
  const entries = await db.iterator({ gte, lt, reverse: true, limit: 1 }).all();
  return entries[0];
}

/** Reads `"seq":N` from an envelope without parsing the whole record. */
function seqOf(json: string): number {
  const match = /"seq":(\d+)/.exec(json);
  if (!match) throw new CorruptRecordError(undefined, `stream record without a seq: ${json.slice(0, 80)}`);
  return Number(match[1]);
}

function isIoError(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'LEVEL_IO_ERROR' || e?.cause?.code === 'LEVEL_IO_ERROR';
}

function isLockError(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'LEVEL_LOCKED' || e?.cause?.code === 'LEVEL_LOCKED';
}
