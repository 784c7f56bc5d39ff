/*
 * Writes tar archives entry by entry, hostile ones included (`..` names, links out of
 * the root, vendor types), which GNU tar will not make. ustar headers, with a PAX
 * extended header before an entry when it has `pax` records.
 */

const BLOCK = 512;

export interface TarSpec {
  name: string;
  /** The ustar type flag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, or any other byte. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  data?: Buffer | string;
  devmajor?: number;
  devminor?: number;
  /** PAX records for this entry (path, linkpath, SCHILY.xattr.*, ...). */
  pax?: Record<string, string | Buffer>;
  /** Break the header's checksum. */
  badChecksum?: boolean;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(spec: TarSpec, size: number, type: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(spec.name.slice(0, 100), 0, 'utf8');
  block.write(octal(spec.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  block.write(octal(spec.uid ?? 0, 8), 108, 'latin1');
  block.write(octal(spec.gid ?? 0, 8), 116, 'latin1');
  block.write(octal(size, 12), 124, 'latin1');
  block.write(octal(spec.mtime ?? 1_600_000_000, 12), 136, 'latin1');
  block.write(type, 156, 'latin1');
  block.write((spec.linkname ?? '').slice(0, 100), 157, 'utf8');
  block.write('ustar\x0000', 257, 'latin1');
  block.write(octal(spec.devmajor ?? 0, 8), 329, 'latin1');
  block.write(octal(spec.devminor ?? 0, 8), 337, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  if (spec.badChecksum) sum += 1;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function padded(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

function paxRecords(records: Record<string, string | Buffer>): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([
      Buffer.from(` ${key}=`),
      Buffer.isBuffer(value) ? value : Buffer.from(value),
      Buffer.from('\n'),
    ]);
    // The length counts its own digits.
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length = String(length).length + body.length;
    out.push(Buffer.concat([Buffer.from(String(length)), body]));
  }
  return Buffer.concat(out);
}

/** The archive of `entries`, ended by two zero blocks. */
export function tarArchive(entries: TarSpec[], o: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const spec of entries) {
    if (spec.pax) {
      const records = paxRecords(spec.pax);
      parts.push(header({ name: 'PaxHeaders/entry' }, records.length, 'x'), padded(records));
    }
    const data = spec.data === undefined ? Buffer.alloc(0) : Buffer.from(spec.data);
    parts.push(header(spec, data.length, spec.type ?? '0'), padded(data));
  }
  if (o.end !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
