/**
 * The CRI container log format, as kubelet reads it (`kubectl logs`, `crictl logs`):
 *
 *   <RFC3339Nano time> <stdout|stderr> <P|F> <text>\n
 *
 * Pure: bytes in, records out, no I/O and no clock. The rules follow containerd's CRI
 * logger (internal/cri/io/logger.go) so that a log written here reads exactly like one
 * written by containerd:
 *   - a line is the bytes before `\n`; one `\r` right before the `\n` is dropped too;
 *   - a line longer than the limit is cut every `maxLineBytes` bytes into P records and
 *     its last piece is an F record (a line of exactly k * max bytes ends with an F of max
 *     bytes, never with an empty F); an empty line is an F record with empty text;
 *   - the cut is by bytes, not characters: a multi-byte UTF-8 character may be split
 *     between two records, and kubelet joins the pieces back byte for byte;
 *   - bytes left when the stream ends without `\n` are written as a P record.
 */

/** What kubelet and containerd use (`max_container_log_line_size`): 16 KiB. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;

export type LogStreamName = 'stdout' | 'stderr';
/** P: the line goes on in the next record of the same stream; F: the line ends here. */
export type LogTag = 'P' | 'F';

/** One record's text and tag, before it gets its time and stream. */
export interface LogPiece {
  tag: LogTag;
  text: Buffer;
}

const LF = 0x0a;
const CR = 0x0d;
const NS_PER_S = 1_000_000_000n;

/**
 * Go's `time.RFC3339Nano` of a UTC instant given in nanoseconds since the Unix epoch:
 * `2006-01-02T15:04:05.999999999Z`, trailing zeros of the fraction trimmed, and no dot at
 * all when the fraction is zero (Go's `.999999999` verb does both).
 */
export function formatRfc3339Nano(epochNs: bigint): string {
  let seconds = epochNs / NS_PER_S;
  let fraction = epochNs % NS_PER_S;
  // BigInt division truncates toward zero; instants before 1970 need the floor.
  if (fraction < 0n) {
    fraction += NS_PER_S;
    seconds -= 1n;
  }
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  const digits = fraction.toString().padStart(9, '0').replace(/0+$/, '');
  return digits === '' ? `${whole}Z` : `${whole}.${digits}Z`;
}

/**
 * The records for `pieces`, all stamped with one time, as one buffer: one write per read
 * keeps a stream's records whole and in order in the file.
 */
export function formatRecords(time: string, stream: LogStreamName, pieces: readonly LogPiece[]): Buffer {
  const headers = pieces.map((p) => `${time} ${stream} ${p.tag} `);
  let size = 0;
  for (let i = 0; i < pieces.length; i++) size += headers[i]!.length + pieces[i]!.text.length + 1;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < pieces.length; i++) {
    at += out.write(headers[i]!, at, 'latin1');
    at += pieces[i]!.text.copy(out, at);
    out[at++] = LF;
  }
  return out;
}

/**
 * Cuts one stream's bytes into pieces, chunk by chunk, holding at most `maxLineBytes + 1`
 * bytes between calls (the `+ 1` is a `\r` that may turn out to end the line). The pieces
 * it returns are either views of the chunk passed in or copies, never views of its own
 * buffer, so they stay valid after the next call.
 */
export class LineSplitter {
  private readonly pending: Buffer;
  private pendingLength = 0;

  constructor(readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1)
      throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
    this.pending = Buffer.allocUnsafe(maxLineBytes + 1);
  }

  /** Bytes held back, waiting for the rest of their line. Never more than maxLineBytes + 1. */
  get buffered(): number {
    return this.pendingLength;
  }

  push(chunk: Uint8Array): LogPiece[] {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: LogPiece[] = [];
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(LF, start);
      const end = newline === -1 ? bytes.length : newline;
      if (newline !== -1 && this.pendingLength === 0) this.wholeLine(bytes, start, end, out);
      else {
        this.append(bytes, start, end, out);
        if (newline !== -1) this.finishLine(out);
      }
      if (newline === -1) break;
      start = newline + 1;
    }
    return out;
  }

  /** The stream ended: what is left had no `\n`, so it goes out as P (containerd does the same). */
  end(): LogPiece[] {
    const out: LogPiece[] = [];
    let at = 0;
    while (this.pendingLength - at > this.maxLineBytes) {
      out.push({ tag: 'P', text: Buffer.from(this.pending.subarray(at, at + this.maxLineBytes)) });
      at += this.maxLineBytes;
    }
    if (this.pendingLength > at)
      out.push({ tag: 'P', text: Buffer.from(this.pending.subarray(at, this.pendingLength)) });
    this.pendingLength = 0;
    return out;
  }

  /** A line that starts and ends inside one chunk: cut it without copying. */
  private wholeLine(bytes: Buffer, start: number, end: number, out: LogPiece[]): void {
    if (end > start && bytes[end - 1] === CR) end--;
    while (end - start > this.maxLineBytes) {
      out.push({ tag: 'P', text: bytes.subarray(start, start + this.maxLineBytes) });
      start += this.maxLineBytes;
    }
    out.push({ tag: 'F', text: bytes.subarray(start, end) });
  }

  /**
   * Adds bytes of an unfinished line. A P piece of `max` bytes goes out as soon as the line
   * is known to be longer than `max`: there is a byte after them that is not a `\r` which
   * the next `\n` could strip.
   */
  private append(bytes: Buffer, start: number, end: number, out: LogPiece[]): void {
    const max = this.maxLineBytes;
    for (;;) {
      if (this.pendingLength === 0) {
        while (end - start > max + 1 || (end - start === max + 1 && bytes[start + max] !== CR)) {
          out.push({ tag: 'P', text: bytes.subarray(start, start + max) });
          start += max;
        }
        this.pendingLength = bytes.copy(this.pending, 0, start, end);
        return;
      }
      const taken = bytes.copy(
        this.pending,
        this.pendingLength,
        start,
        Math.min(end, start + max + 1 - this.pendingLength),
      );
      this.pendingLength += taken;
      start += taken;
      if (this.pendingLength <= max || (start === end && this.pending[max] === CR)) return;
      out.push({ tag: 'P', text: Buffer.from(this.pending.subarray(0, max)) });
      this.pending[0] = this.pending[max]!;
      this.pendingLength = 1;
      if (start === end) return;
    }
  }

  private finishLine(out: LogPiece[]): void {
    let length = this.pendingLength;
    if (length > 0 && this.pending[length - 1] === CR) length--;
    out.push({ tag: 'F', text: Buffer.from(this.pending.subarray(0, length)) });
    this.pendingLength = 0;
  }
}
