import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { CriLedgerError } from '../../domain/errors.js';

/*
 * Where each file of a tar archive is, without reading the files: one pass over the
 * 512-byte headers (ustar, with the POSIX pax and GNU long-name extensions that GNU tar
 * and docker write), seeking past the data. Image archives hold a few large blobs, so
 * this reads a few KiB however big the archive is.
 */

const BLOCK = 512;

export interface TarEntry {
  /** The path as normalized here: no leading `./` or `/`. */
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  /** Where the data starts in the archive file. */
  offset: number;
  size: number;
  /** The target of a link, as written. */
  linkname: string;
}

/** The archive is not a tar this reader understands. */
export class TarFormatError extends CriLedgerError {
  constructor(file: string, detail: string) {
    super(`${file}: not a readable tar archive: ${detail}`);
  }
}

function text(header: Buffer, start: number, length: number): string {
  const field = header.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

/** A numeric field: octal text, or GNU's base-256 when the high bit of the first byte is set. */
function numeric(header: Buffer, start: number, length: number): number {
  const field = header.subarray(start, start + length);
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const digits = text(header, start, length).trim();
  return digits === '' ? 0 : parseInt(digits, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === numeric(header, 148, 8);
}

/** `key=value` records of a pax extended header ("<length> <key>=<value>\n" each). */
function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (!(length > 0)) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq !== -1) records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

/** `./a/b/`, `/a/b` -> `a/b`; `.` and `./` -> ''. */
export function normalizeTarPath(name: string): string {
  const normalized = posix.normalize(`/${name}`).slice(1);
  return normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

const TYPES: Record<string, TarEntry['type']> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '5': 'dir',
};

/** Every entry of the tar open as `handle` (named `file` in errors), by normalized path. */
export async function indexTar(handle: FileHandle, file: string): Promise<Map<string, TarEntry>> {
  const { size: fileSize } = await handle.stat();
  const entries = new Map<string, TarEntry>();
  const header = Buffer.alloc(BLOCK);
  let position = 0;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  const readData = async (offset: number, size: number): Promise<Buffer> => {
    if (size > 1024 * 1024) throw new TarFormatError(file, `a ${size}-byte extended header`);
    const data = Buffer.alloc(size);
    const { bytesRead } = await handle.read(data, 0, size, offset);
    if (bytesRead !== size) throw new TarFormatError(file, 'truncated');
    return data;
  };
  for (;;) {
    const { bytesRead } = await handle.read(header, 0, BLOCK, position);
    // Two zero blocks end an archive; some writers stop after one, or with none.
    if (bytesRead < BLOCK || header.every((b) => b === 0)) break;
    if (!checksumOk(header)) throw new TarFormatError(file, `bad header checksum at offset ${position}`);
    const typeflag = String.fromCharCode(header[156]!);
    const size = Number(pax.get('size') ?? numeric(header, 124, 12));
    const dataOffset = position + BLOCK;
    if (dataOffset + size > fileSize) throw new TarFormatError(file, 'truncated');
    position = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'x') {
      pax = paxRecords(await readData(dataOffset, size));
      continue;
    }
    if (typeflag === 'g') continue;
    if (typeflag === 'L' || typeflag === 'K') {
      const value = (await readData(dataOffset, size)).toString('utf8').replace(/\0+$/, '');
      if (typeflag === 'L') longName = value;
      else longLink = value;
      continue;
    }
    const prefix = header.subarray(257, 262).toString('ascii') === 'ustar' ? text(header, 345, 155) : '';
    const rawName =
      pax.get('path') ?? longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    const name = normalizeTarPath(rawName);
    const linkname = pax.get('linkpath') ?? longLink ?? text(header, 157, 100);
    if (name !== '') entries.set(name, { name, type: TYPES[typeflag] ?? 'other', offset: dataOffset, size, linkname });
    pax = new Map();
    longName = undefined;
    longLink = undefined;
  }
  return entries;
}

/** The regular file `name` leads to, following links inside the archive. */
export function resolveTarFile(entries: Map<string, TarEntry>, name: string): TarEntry | undefined {
  let entry = entries.get(normalizeTarPath(name));
  for (let hops = 0; entry && hops < 16; hops++) {
    if (entry.type === 'file') return entry;
    if (entry.type === 'hardlink') entry = entries.get(normalizeTarPath(entry.linkname));
    else if (entry.type === 'symlink') {
      const target = entry.linkname.startsWith('/')
        ? entry.linkname
        : posix.join(posix.dirname(entry.name), entry.linkname);
      entry = entries.get(normalizeTarPath(target));
    } else return undefined;
  }
  return undefined;
}
