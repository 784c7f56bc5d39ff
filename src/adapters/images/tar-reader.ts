import { CriLedgerError } from '../../domain/errors.js';

/*
 * A streaming reader of the tar archives image layers are: ustar headers, PAX extended
 * headers (per entry and global) and GNU long names, the formats Docker, BuildKit and
 * Go's archive/tar write. Bodies are handed on as the pieces arrive, never gathered, so
 * a layer of any size is read in bounded memory. Anything it does not understand (a GNU
 * sparse file, a vendor type) is an UnsupportedTarEntryError, never a guess.
 */

const BLOCK = 512;
/** PAX and GNU long-name records are buffered; real ones are a few KiB. */
export const DEFAULT_MAX_TAR_META_BYTES = 1024 * 1024;

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  /** The path as the archive names it (PAX and GNU long names applied). */
  path: string;
  type: TarEntryType;
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch; PAX gives fractions. */
  mtime: number;
  /** The target of a symlink or hard link. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.<name>` records, values as raw bytes. */
  xattrs: Map<string, Buffer>;
}

/** The archive is not a well-formed tar: a bad checksum, a cut-off header or body. */
export class CorruptTarError extends CriLedgerError {}

/** A well-formed entry of a kind this reader does not extract (GNU sparse, vendor types). */
export class UnsupportedTarEntryError extends CriLedgerError {}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Pulls exact byte counts out of an async iterable of buffers without copying bodies. */
class ByteQueue {
  private chunks: Buffer[] = [];
  private queued = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Reads until `n` bytes are queued or the source ends; true when they are. */
  private async fill(n: number): Promise<boolean> {
    while (this.queued < n && !this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.chunks.push(next.value);
        this.queued += next.value.length;
      }
    }
    return this.queued >= n;
  }

  /** Exactly `n` bytes; undefined at a clean end (nothing left); CorruptTarError when cut short. */
  async take(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.queued === 0) return undefined;
      throw new CorruptTarError(`the archive ends inside a ${n}-byte block`);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) at += this.shiftInto(out, at, n - at);
    return out;
  }

  /** `n` bytes as the pieces they arrived in (sliced, not copied). */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.queued === 0 && !(await this.fill(1)))
        throw new CorruptTarError(`the archive ends ${left} bytes before the end of an entry`);
      const head = this.chunks[0]!;
      const piece = head.length <= left ? head : head.subarray(0, left);
      this.consume(piece.length);
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n)) continue;
  }

  /** Whatever follows the archive's end (zero padding), read to the end of the source. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.queued = 0;
    while (!this.ended) if ((await this.source.next()).done) this.ended = true;
  }

  private shiftInto(out: Buffer, at: number, want: number): number {
    const head = this.chunks[0]!;
    const n = Math.min(want, head.length);
    head.copy(out, at, 0, n);
    this.consume(n);
    return n;
  }

  private consume(n: number): void {
    const head = this.chunks[0]!;
    this.queued -= n;
    if (n === head.length) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
  }
}

function text(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString('utf8', offset, end === -1 || end > offset + length ? offset + length : end);
}

/** A numeric field: octal text, or base-256 when the high bit of its first byte is set. */
function numeric(block: Buffer, offset: number, length: number, what: string): number {
  if (block[offset]! & 0x80) {
    if (block[offset] === 0xff) throw new CorruptTarError(`negative ${what} in a tar header`);
    let value = block[offset]! & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i]!;
    if (!Number.isSafeInteger(value)) throw new CorruptTarError(`${what} in a tar header is too large`);
    return value;
  }
  const digits = text(block, offset, length).trim();
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits)) throw new CorruptTarError(`${what} "${digits}" in a tar header is not octal`);
  return parseInt(digits, 8);
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === numeric(block, 148, 8, 'checksum');
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** PAX records `<len> <key>=<value>\n`; values kept as bytes (xattr values are binary). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = space === -1 ? NaN : Number(data.toString('latin1', at, space));
    if (!Number.isInteger(length) || length <= 0 || at + length > data.length || data[at + length - 1] !== 0x0a)
      throw new CorruptTarError('a PAX header record is malformed');
    const record = data.subarray(space + 1, at + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new CorruptTarError('a PAX header record has no key');
    records.set(record.toString('utf8', 0, eq), record.subarray(eq + 1));
    at += length;
  }
  return records;
}

function paxNumber(records: Map<string, Buffer>, key: string): number | undefined {
  const raw = records.get(key)?.toString('utf8');
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new CorruptTarError(`PAX ${key} "${raw}" is not a number`);
  return value;
}

export interface TarItem {
  entry: TarEntry;
  /** The entry's data; read it all (or not at all) before asking for the next item. */
  body: AsyncIterable<Buffer>;
}

/** The entries of the tar archive `source`, in order; ends at the end-of-archive blocks (the rest is read and dropped). */
export async function* readTar(
  source: AsyncIterable<Buffer>,
  o: { maxMetaBytes?: number } = {},
): AsyncGenerator<TarItem> {
  const maxMeta = o.maxMetaBytes ?? DEFAULT_MAX_TAR_META_BYTES;
  const bytes = new ByteQueue(source[Symbol.asyncIterator]());
  const global = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const block = await bytes.take(BLOCK);
    if (!block || isZero(block)) break;
    if (!checksumOk(block)) throw new CorruptTarError('a tar header has a bad checksum');
    const flag = String.fromCharCode(block[156]!);
    const size = numeric(block, 124, 12, 'size');
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > maxMeta) throw new CorruptTarError(`a tar metadata record of ${size} bytes is larger than ${maxMeta}`);
      const record = size === 0 ? Buffer.alloc(0) : await bytes.take(Math.ceil(size / BLOCK) * BLOCK);
      if (!record) throw new CorruptTarError('the archive ends inside a metadata record');
      const data = record.subarray(0, size);
      if (flag === 'x') local = parsePax(data);
      else if (flag === 'g') for (const [k, v] of parsePax(data)) global.set(k, v);
      else if (flag === 'L') longName = text(data, 0, data.length);
      else longLink = text(data, 0, data.length);
      continue;
    }
    const pax = new Map([...global, ...local]);
    local = new Map();
    const magic = block.toString('latin1', 257, 262);
    const prefix = magic === 'ustar' ? text(block, 345, 155) : '';
    const name = text(block, 0, 100);
    const path = pax.get('path')?.toString('utf8') ?? longName ?? (prefix ? `${prefix}/${name}` : name);
    const linkname = pax.get('linkpath')?.toString('utf8') ?? longLink ?? text(block, 157, 100);
    longName = longLink = undefined;
    let type = TYPES[flag];
    if (type === undefined || [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
      throw new UnsupportedTarEntryError(
        `tar entry ${JSON.stringify(path)} has type ${JSON.stringify(flag)}, which is not extracted here`,
      );
    }
    // Old tars mark a directory by a trailing slash on a regular entry.
    if (type === 'file' && flag !== '7' && path.endsWith('/')) type = 'dir';
    const bodySize = paxNumber(pax, 'size') ?? size;
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const entry: TarEntry = {
      path,
      type,
      mode: numeric(block, 100, 8, 'mode') & 0o7777,
      uid: paxNumber(pax, 'uid') ?? numeric(block, 108, 8, 'uid'),
      gid: paxNumber(pax, 'gid') ?? numeric(block, 116, 8, 'gid'),
      size: type === 'file' ? bodySize : 0,
      mtime: paxNumber(pax, 'mtime') ?? numeric(block, 136, 12, 'mtime'),
      linkname,
      devmajor: numeric(block, 329, 8, 'devmajor'),
      devminor: numeric(block, 337, 8, 'devminor'),
      xattrs,
    };
    let delivered = 0;
    const body: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        if (type !== 'file') return;
        for await (const piece of bytes.pieces(bodySize - delivered)) {
          delivered += piece.length;
          yield piece;
        }
      },
    };
    yield { entry, body };
    // What the consumer left unread, and the padding to the next block.
    await bytes.skip(Math.ceil(bodySize / BLOCK) * BLOCK - delivered);
  }
  await bytes.drain();
}
