import { HpackError } from './hpack-errors.js';
import { huffmanDecode } from './hpack-huffman.js';

/*
 * HPACK (RFC 7541), the two halves the socket's authority filter needs: a decoder that
 * follows a client's encoder (dynamic table and all), and an encoder that never uses a
 * dynamic table, so the server's decoder never holds an entry the filter did not send.
 * Names and values are kept as latin1 strings: one char per octet, any octet allowed.
 */

/** One header field; `sensitive` is HPACK's "never indexed" bit, kept across a re-encode. */
export interface HeaderField {
  name: string;
  value: string;
  sensitive: boolean;
}

/** SETTINGS_HEADER_TABLE_SIZE's initial value, which neither Node nor grpc-js changes. */
export const DEFAULT_HEADER_TABLE_SIZE_BYTES = 4096;
/** RFC 7541 4.1: an entry's size is its name and value lengths plus 32. */
const ENTRY_OVERHEAD_BYTES = 32;
/** Larger integers are refused rather than computed: no length on this socket comes near. */
const MAX_INTEGER = 2 ** 28;

/** RFC 7541, Appendix A. Index i + 1 is entry i. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

const staticByName = new Map<string, number>();
const staticByField = new Map<string, number>();
for (const [i, [name, value]] of STATIC_TABLE.entries()) {
  if (!staticByName.has(name)) staticByName.set(name, i + 1);
  staticByField.set(`${name}\0${value}`, i + 1);
}

/** Follows one peer's header blocks, in order, for one connection. */
export class HpackDecoder {
  /** Newest first, as HPACK numbers them. */
  private readonly dynamic: { name: string; value: string }[] = [];
  private size = 0;
  private maxSize: number;

  /** `limit` is the SETTINGS_HEADER_TABLE_SIZE announced to the peer. */
  constructor(private readonly limit = DEFAULT_HEADER_TABLE_SIZE_BYTES) {
    this.maxSize = limit;
  }

  /** Decodes one complete header block. After an error the decoder's state is undefined: end the connection. */
  decode(block: Buffer): HeaderField[] {
    const fields: HeaderField[] = [];
    const reader = { block, at: 0 };
    while (reader.at < block.length) {
      const first = block[reader.at]!;
      if (first & 0x80) {
        const { name, value } = this.lookup(readInteger(reader, 7));
        fields.push({ name, value, sensitive: false });
      } else if (first & 0x40) {
        const field = this.readLiteral(reader, 6, false);
        this.insert(field.name, field.value);
        fields.push(field);
      } else if (first & 0x20) {
        // RFC 7541 4.2: a size update may only open a header block.
        if (fields.length > 0) throw new HpackError('a dynamic table size update after a header field');
        const size = readInteger(reader, 5);
        if (size > this.limit) throw new HpackError(`a dynamic table size of ${size}, above the ${this.limit} allowed`);
        this.maxSize = size;
        this.evictTo(size);
      } else {
        fields.push(this.readLiteral(reader, 4, (first & 0x10) !== 0));
      }
    }
    return fields;
  }

  private readLiteral(reader: Reader, prefixBits: number, sensitive: boolean): HeaderField {
    const index = readInteger(reader, prefixBits);
    const name = index === 0 ? readString(reader) : this.lookup(index).name;
    return { name, value: readString(reader), sensitive };
  }

  private lookup(index: number): { name: string; value: string } {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) {
      const [name, value] = STATIC_TABLE[index - 1]!;
      return { name, value };
    }
    const entry = this.dynamic[index - STATIC_TABLE.length - 1];
    if (!entry) throw new HpackError(`index ${index} is past the end of the tables`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD_BYTES;
    // RFC 7541 4.4: an entry larger than the table empties it and is not added.
    this.evictTo(Math.max(0, this.maxSize - size));
    if (size > this.maxSize) return;
    this.dynamic.unshift({ name, value });
    this.size += size;
  }

  private evictTo(size: number): void {
    while (this.size > size) {
      const oldest = this.dynamic.pop()!;
      this.size -= oldest.name.length + oldest.value.length + ENTRY_OVERHEAD_BYTES;
    }
  }
}

interface Reader {
  block: Buffer;
  at: number;
}

/** RFC 7541 5.1: an integer in the low `prefixBits` of the current octet, continued 7 bits at a time. */
function readInteger(reader: Reader, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  let value = reader.block[reader.at++]! & max;
  if (value < max) return value;
  let shift = 0;
  for (;;) {
    if (reader.at >= reader.block.length) throw new HpackError('an integer cut off at the end of the block');
    const byte = reader.block[reader.at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (value > MAX_INTEGER) throw new HpackError('an integer too large');
    if ((byte & 0x80) === 0) return value;
    shift += 7;
  }
}

function readString(reader: Reader): string {
  if (reader.at >= reader.block.length) throw new HpackError('a string missing at the end of the block');
  const huffman = (reader.block[reader.at]! & 0x80) !== 0;
  const length = readInteger(reader, 7);
  const end = reader.at + length;
  if (end > reader.block.length) throw new HpackError('a string longer than its header block');
  const raw = reader.block.subarray(reader.at, end);
  reader.at = end;
  return (huffman ? huffmanDecode(raw) : raw).toString('latin1');
}

/**
 * Encodes fields without touching the decoder's dynamic table: a static-table match is
 * indexed, anything else is a literal without indexing (never indexed when the sender
 * marked it sensitive), strings unencoded. On a unix socket the bytes this costs over a
 * dynamic table are nothing next to keeping two tables in step.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const { name, value, sensitive } of fields) {
    const exact = sensitive ? undefined : staticByField.get(`${name}\0${value}`);
    if (exact !== undefined) {
      writeInteger(out, exact, 7, 0x80);
      continue;
    }
    const nameIndex = staticByName.get(name) ?? 0;
    writeInteger(out, nameIndex, 4, sensitive ? 0x10 : 0x00);
    if (nameIndex === 0) writeString(out, name);
    writeString(out, value);
  }
  return Buffer.from(out);
}

function writeInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function writeString(out: number[], text: string): void {
  writeInteger(out, text.length, 7, 0x00);
  for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i));
}
