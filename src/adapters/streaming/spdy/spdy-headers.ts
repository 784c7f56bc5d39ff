import { constants as zlibConstants, createInflate, type Inflate } from 'node:zlib';
import { adler32, SPDY3_HEADER_DICTIONARY } from './spdy-dictionary.js';
import { SpdyProtocolError } from './spdy-frames.js';

/*
 * SPDY/3 header blocks: a count, then (name, value) pairs, every length 4 bytes
 * big-endian, names lower-case, several values of one name joined by NUL. All blocks of
 * one direction of a connection form one zlib stream with the SPDY dictionary: each peer
 * keeps one inflater and one deflater for the connection's life.
 */

/** Header names and their values, as a client sent them (names lower-case). */
export type SpdyHeaders = ReadonlyMap<string, readonly string[]>;

function serialize(headers: Iterable<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  let count = 0;
  for (const [name, value] of headers) {
    for (const text of [name.toLowerCase(), value]) {
      const bytes = Buffer.from(text, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length, 0);
      parts.push(length, bytes);
    }
    count++;
  }
  const head = Buffer.alloc(4);
  head.writeUInt32BE(count, 0);
  return Buffer.concat([head, ...parts]);
}

/**
 * Writes this side's header blocks as stored (uncompressed) deflate blocks of one zlib
 * stream: valid zlib that every inflater reads, written synchronously. Each block ends
 * with an empty stored block, the sync-flush marker, so a reader that stops at the end
 * of the frame (Go's spdy framer does) has everything without reading ahead.
 */
export class HeaderBlockWriter {
  #started = false;

  encode(headers: Iterable<readonly [string, string]> = []): Buffer {
    const raw = serialize(headers);
    const parts: Buffer[] = [];
    if (!this.#started) {
      // CMF 0x78 (deflate, 32 KiB window), FLG 0xbb (FDICT set, check bits valid), then the dictionary id.
      const zlibHead = Buffer.from([0x78, 0xbb, 0, 0, 0, 0]);
      zlibHead.writeUInt32BE(adler32(SPDY3_HEADER_DICTIONARY), 2);
      parts.push(zlibHead);
      this.#started = true;
    }
    for (let offset = 0; offset < raw.length; offset += 0xffff) {
      const piece = raw.subarray(offset, offset + 0xffff);
      parts.push(storedBlockHead(piece.length), piece);
    }
    parts.push(storedBlockHead(0));
    return Buffer.concat(parts);
  }
}

/** A non-final stored deflate block's header: BFINAL=0, BTYPE=00, then LEN and NLEN little-endian. */
function storedBlockHead(length: number): Buffer {
  const head = Buffer.alloc(5);
  head[0] = 0;
  head.writeUInt16LE(length, 1);
  head.writeUInt16LE(~length & 0xffff, 3);
  return head;
}

/**
 * Reads the peer's header blocks through one inflater for the connection. Inflating is
 * asynchronous in Node, so blocks are decoded strictly one after another, in order.
 */
export class HeaderBlockReader {
  readonly #inflate: Inflate = createInflate({
    dictionary: SPDY3_HEADER_DICTIONARY,
    flush: zlibConstants.Z_SYNC_FLUSH,
  });
  #tail: Promise<unknown> = Promise.resolve();
  #failure: Error | undefined;
  #output: Buffer[] = [];

  constructor() {
    this.#inflate.on('error', (error: Error) => {
      this.#failure = error;
    });
    // Drained as it comes, so a large block never stalls the inflater on its own buffer.
    this.#inflate.on('readable', () => this.#drain());
  }

  #drain(): void {
    for (let chunk = this.#inflate.read() as Buffer | null; chunk; chunk = this.#inflate.read() as Buffer | null)
      this.#output.push(chunk);
  }

  decode(block: Buffer): Promise<SpdyHeaders> {
    const next = this.#tail.then(() => this.#inflateBlock(block)).then(parse);
    this.#tail = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.#inflate.destroy();
  }

  #inflateBlock(block: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.#failure) return reject(new SpdyProtocolError(`header block: ${this.#failure.message}`));
      // Every write is sync-flushed (the inflater's flush mode): one trip through the
      // thread pool per block, its output pushed before the callback.
      this.#inflate.write(block, () => {
        if (this.#failure) return reject(new SpdyProtocolError(`header block: ${this.#failure.message}`));
        this.#drain();
        const raw = Buffer.concat(this.#output);
        this.#output = [];
        resolve(raw);
      });
    });
  }
}

function parse(raw: Buffer): SpdyHeaders {
  let offset = 0;
  const u32 = (): number => {
    if (offset + 4 > raw.length) throw new SpdyProtocolError('truncated header block');
    const value = raw.readUInt32BE(offset);
    offset += 4;
    return value;
  };
  const text = (): string => {
    const length = u32();
    if (offset + length > raw.length) throw new SpdyProtocolError('truncated header block');
    const value = raw.toString('utf8', offset, offset + length);
    offset += length;
    return value;
  };
  const headers = new Map<string, string[]>();
  for (let count = u32(); count > 0; count--) {
    const name = text().toLowerCase();
    const values = text().split('\0');
    const known = headers.get(name);
    if (known) known.push(...values);
    else headers.set(name, values);
  }
  return headers;
}

/** The first value of a header, or undefined. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers.get(name.toLowerCase())?.[0];
}
