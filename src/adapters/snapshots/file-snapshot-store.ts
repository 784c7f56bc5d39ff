import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { SnapshotStore, StoredSnapshot } from '../../commands/ports.js';
import { SnapshotCorruptError } from '../../domain/errors.js';

/*
 * Snapshots of the projections, one file each, in `<ledger>/snapshots`:
 *
 *   projections-<seq, 16 digits>.snap     the snapshot's text (src/projections/projection-snapshot.ts),
 *                                         then one trailer line {"sha256":"<hex>","bytes":N} over the text
 *
 * A file is written under a temporary name, fsynced, renamed into place and the
 * directory fsynced, so a crash leaves the old files and at most a temporary one (which
 * the next write removes), never a half-written snapshot under a snapshot's name. The
 * trailer catches what the disk does later: a flipped byte, a cut file.
 */
const PREFIX = 'projections-';
const SUFFIX = '.snap';
const TEMP_MARK = '.tmp-';
const SEQ_DIGITS = 16;
/** Bytes gathered before a write to the file: the writer yields to the event loop at each write. */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/** What writing one snapshot cost. */
export interface SnapshotWriteStats {
  location: string;
  bytes: number;
  /** The longest the writer held the event loop in one go (encoding a chunk of documents). */
  longestSliceMs: number;
  /** From the first chunk to the rename. */
  totalMs: number;
}

/** The snapshots directory of a ledger directory. */
export function snapshotDir(ledgerDir: string): string {
  return join(ledgerDir, 'snapshots');
}

export class FileSnapshotStore implements SnapshotStore {
  constructor(readonly dir: string) {}

  private fileOf(seq: number): string {
    return join(this.dir, `${PREFIX}${String(seq).padStart(SEQ_DIGITS, '0')}${SUFFIX}`);
  }

  async list(): Promise<StoredSnapshot[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names
      .flatMap((name) => {
        const m = /^projections-(\d{16})\.snap$/.exec(name);
        return m ? [{ seq: Number(m[1]), location: join(this.dir, name) }] : [];
      })
      .sort((a, b) => b.seq - a.seq);
  }

  async read(snapshot: StoredSnapshot): Promise<string> {
    let bytes: Buffer;
    try {
      bytes = await readFile(snapshot.location);
    } catch (error) {
      throw new SnapshotCorruptError(snapshot.location, `cannot read it: ${(error as Error).message}`, {
        cause: error,
      });
    }
    // The trailer is the last line; the file ends with its newline.
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0a ? bytes.length - 1 : -1;
    const cut = end < 0 ? -1 : bytes.lastIndexOf(0x0a, end - 1);
    if (end < 0 || cut < 0) throw new SnapshotCorruptError(snapshot.location, 'no checksum trailer (a cut file?)');
    let trailer: { sha256?: unknown; bytes?: unknown };
    try {
      trailer = JSON.parse(bytes.subarray(cut + 1, end).toString('utf8')) as typeof trailer;
    } catch {
      throw new SnapshotCorruptError(snapshot.location, 'no checksum trailer (a cut file?)');
    }
    const body = bytes.subarray(0, cut + 1);
    if (trailer.bytes !== body.length)
      throw new SnapshotCorruptError(
        snapshot.location,
        `${body.length} bytes, the trailer says ${String(trailer.bytes)}`,
      );
    const sha256 = createHash('sha256').update(body).digest('hex');
    if (trailer.sha256 !== sha256) throw new SnapshotCorruptError(snapshot.location, 'checksum mismatch');
    return body.toString('utf8');
  }

  /**
   * Writes the snapshot made of `chunks` (each a run of whole lines), atomically. Pulls
   * one chunk at a time and yields to the event loop after each, so a large snapshot
   * never holds it for longer than one chunk's encoding.
   */
  async write(seq: number, chunks: Iterable<string>): Promise<SnapshotWriteStats> {
    const started = performance.now();
    await mkdir(this.dir, { recursive: true });
    const target = this.fileOf(seq);
    const temp = `${target}${TEMP_MARK}${process.pid}`;
    const hash = createHash('sha256');
    let bytes = 0;
    let longestSliceMs = 0;
    const file = await open(temp, 'w', 0o600);
    try {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const iterator = chunks[Symbol.iterator]();
      for (;;) {
        const sliceStarted = performance.now();
        const next = iterator.next();
        if (next.done) break;
        const buffer = Buffer.from(next.value, 'utf8');
        hash.update(buffer);
        bytes += buffer.length;
        pending.push(buffer);
        pendingBytes += buffer.length;
        longestSliceMs = Math.max(longestSliceMs, performance.now() - sliceStarted);
        if (pendingBytes >= WRITE_BUFFER_BYTES) {
          await file.writev(pending);
          pending = [];
          pendingBytes = 0;
        } else {
          await yieldToEventLoop();
        }
      }
      pending.push(Buffer.from(`${JSON.stringify({ sha256: hash.digest('hex'), bytes })}\n`, 'utf8'));
      await file.writev(pending);
      await file.sync();
    } catch (error) {
      await file.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw error;
    }
    await file.close();
    await rename(temp, target);
    await syncDir(this.dir);
    return { location: target, bytes, longestSliceMs, totalMs: performance.now() - started };
  }

  /** Keeps the newest `keep` snapshots; removes the rest and any temporary file a crash left. */
  async prune(keep: number): Promise<string[]> {
    const removed: string[] = [];
    for (const old of (await this.list()).slice(keep)) {
      await rm(old.location, { force: true });
      removed.push(old.location);
    }
    const mine = `${TEMP_MARK}${process.pid}`;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith(PREFIX) && name.includes(TEMP_MARK) && !name.endsWith(mine)) {
        await rm(join(this.dir, name), { force: true });
        removed.push(join(this.dir, name));
      }
    }
    return removed;
  }
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
