import { HpackError } from './hpack-errors.js';
import { DEFAULT_HEADER_TABLE_SIZE_BYTES, encodeHeaderBlock, HpackDecoder, type HeaderField } from './hpack.js';

/*
 * What a client sends to the socket, HTTP/2 frame by frame, with one change: a request's
 * `:authority` (or `host`) that nghttp2 would refuse becomes `localhost`.
 *
 * Go CRI clients that dial through a custom dialer (kubelet before 1.30, crictl, critest,
 * grpcurl -unix) send the socket path as `:authority`. nghttp2, under Node's HTTP/2
 * server, allows only RFC 3986 authority characters there and resets the stream with
 * PROTOCOL_ERROR before grpc-js sees the call. On a unix socket the authority means
 * nothing, so it is replaced; every other check stays nghttp2's.
 *
 * To change one header the whole header block is decoded (the client's HPACK dynamic
 * table followed entry by entry) and encoded again without a dynamic table. Frames other
 * than HEADERS and CONTINUATION pass through as they are, streamed, never buffered whole.
 *
 * The filter never judges a connection itself. What it cannot follow (a missing preface,
 * HPACK it cannot decode, a frame larger than the server allows, a frame inside a header
 * block, a client PUSH_PROMISE) it passes on as the client sent it, from the first byte
 * it could not follow: nghttp2 then answers with the error HTTP/2 prescribes, as it
 * would have without the filter.
 */

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;
const TYPE_HEADERS = 0x1;
const TYPE_PRIORITY = 0x2;
const TYPE_SETTINGS = 0x4;
const TYPE_WINDOW_UPDATE = 0x8;
const TYPE_PUSH_PROMISE = 0x5;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const PRIORITY_BYTES = 5;

/** SETTINGS_MAX_FRAME_SIZE's initial value; Node's server and grpc-js keep it. */
export const DEFAULT_MAX_FRAME_SIZE_BYTES = 16_384;
/** A header block, across its frames, may not exceed this: grpc-js allows 8 KiB of metadata by default. */
export const MAX_HEADER_BLOCK_BYTES = 1024 * 1024;
/** What a rejected authority becomes: what grpc-js and newer grpc-go send on a unix socket. */
export const LOCAL_AUTHORITY = 'localhost';

/**
 * nghttp2's test for an authority (nghttp2_check_authority): RFC 3986's unreserved,
 * percent, sub-delims, ':', '@', '[' and ']'. An empty one is replaced as well.
 */
const VALID_AUTHORITY = /^[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]+$/;

export const isServableAuthority = (value: string): boolean => VALID_AUTHORITY.test(value);

/**
 * An empty SETTINGS frame: the server's connection preface, all settings at their
 * defaults. The socket sends it at accept (see filtered-connection.ts); the HTTP/2
 * server's own SETTINGS follow as an ordinary later SETTINGS frame.
 */
export const EMPTY_SETTINGS_FRAME = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);

/** A header block being gathered from a HEADERS frame and its CONTINUATIONs. */
interface OpenBlock {
  /** The block's frames as the client sent them, for when the filter gives up. */
  raw: Buffer[];
  streamId: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fragments: Buffer[];
  bytes: number;
}

export class AuthorityFilter {
  private input: Buffer = Buffer.alloc(0);
  private state: 'preface' | 'frames' | 'passthrough' = 'preface';
  /** Payload bytes of the current pass-through frame not yet forwarded. */
  private forwarding = 0;
  private block: OpenBlock | undefined;
  private readonly decoder = new HpackDecoder(DEFAULT_HEADER_TABLE_SIZE_BYTES);
  /**
   * What the first header block needed: still 'pending', 'untouched' (its authority is
   * servable as sent), 'rewritten', or 'given up' (the filter passes bytes through).
   */
  firstBlock: 'pending' | 'untouched' | 'rewritten' | 'given up' = 'pending';
  /** A frame the server may have to answer (PING, RST_STREAM, GOAWAY, DATA, ...) has been passed on. */
  passedAnswerable = false;

  /** Input bytes taken so far. */
  private consumed = 0;
  /**
   * Where in the input the client's acknowledgement of EMPTY_SETTINGS_FRAME began; it is
   * dropped, since the HTTP/2 server never sent that frame. Unset until it arrives.
   */
  settingsAckAt: number | undefined;

  /**
   * `onRewrite` hears each authority replaced (for the log). With `dropFirstSettingsAck`
   * the first SETTINGS acknowledgement is the answer to EMPTY_SETTINGS_FRAME and is dropped.
   */
  constructor(
    private readonly onRewrite: (original: string) => void = () => undefined,
    dropFirstSettingsAck = false,
  ) {
    if (!dropFirstSettingsAck) this.settingsAckAt = -1;
  }

  /** The bytes to hand the server for `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    if (this.state === 'passthrough') return [chunk];
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    const out: Buffer[] = [];
    if (this.state === 'preface') {
      if (this.input.length < PREFACE.length) {
        if (PREFACE.subarray(0, this.input.length).equals(this.input)) return out;
        return this.giveUp(out);
      }
      if (!this.input.subarray(0, PREFACE.length).equals(PREFACE)) return this.giveUp(out);
      out.push(this.take(PREFACE.length));
      this.state = 'frames';
    }
    while (this.state === 'frames') {
      if (this.forwarding > 0) {
        if (this.input.length === 0) break;
        const piece = this.take(Math.min(this.forwarding, this.input.length));
        this.forwarding -= piece.length;
        out.push(piece);
        continue;
      }
      if (this.input.length < FRAME_HEADER_BYTES) break;
      const length = this.input.readUIntBE(0, 3);
      const type = this.input[3]!;
      const flags = this.input[4]!;
      if (type !== TYPE_HEADERS && type !== TYPE_CONTINUATION) {
        if (this.block || type === TYPE_PUSH_PROMISE) return this.giveUp(out);
        if (type === TYPE_SETTINGS && length === 0 && flags & FLAG_ACK && this.settingsAckAt === undefined) {
          this.settingsAckAt = this.consumed;
          this.take(FRAME_HEADER_BYTES);
          continue;
        }
        if (type !== TYPE_SETTINGS && type !== TYPE_WINDOW_UPDATE && type !== TYPE_PRIORITY)
          this.passedAnswerable = true;
        out.push(this.take(FRAME_HEADER_BYTES));
        this.forwarding = length;
        continue;
      }
      if (length > DEFAULT_MAX_FRAME_SIZE_BYTES) return this.giveUp(out);
      if (this.input.length < FRAME_HEADER_BYTES + length) break;
      const streamId = this.input.readUInt32BE(5) & 0x7fffffff;
      const frame = this.input.subarray(0, FRAME_HEADER_BYTES + length);
      const payload = frame.subarray(FRAME_HEADER_BYTES);
      const followed =
        type === TYPE_HEADERS ? this.openBlock(frame, streamId, flags, payload) : this.continueBlock(frame, streamId);
      if (!followed) return this.giveUp(out);
      this.take(frame.length);
      if (flags & FLAG_END_HEADERS) {
        const frames = this.closeBlock();
        if (!frames) return this.giveUp(out);
        out.push(...frames);
      }
    }
    return out;
  }

  /** Starts a block; false if the frame is not one the filter can follow. */
  private openBlock(frame: Buffer, streamId: number, flags: number, payload: Buffer): boolean {
    if (this.block) return false;
    let start = 0;
    let end = payload.length;
    if (flags & FLAG_PADDED) {
      if (payload.length < 1) return false;
      start = 1;
      end -= payload[0]!;
    }
    let priority: Buffer | undefined;
    if (flags & FLAG_PRIORITY) {
      priority = payload.subarray(start, start + PRIORITY_BYTES);
      start += PRIORITY_BYTES;
    }
    if (end < start) return false;
    const fragment = payload.subarray(start, end);
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    this.block = { raw: [frame], streamId, endStream, priority, fragments: [fragment], bytes: fragment.length };
    return true;
  }

  private continueBlock(frame: Buffer, streamId: number): boolean {
    const block = this.block;
    if (!block || block.streamId !== streamId) return false;
    block.bytes += frame.length - FRAME_HEADER_BYTES;
    if (block.bytes > MAX_HEADER_BLOCK_BYTES) return false;
    block.raw.push(frame);
    block.fragments.push(frame.subarray(FRAME_HEADER_BYTES));
    return true;
  }

  /** Decodes the finished block, replaces what nghttp2 would refuse, and frames it again. */
  private closeBlock(): Buffer[] | undefined {
    const block = this.block!;
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(block.fragments.length === 1 ? block.fragments[0]! : Buffer.concat(block.fragments));
    } catch (error) {
      if (error instanceof HpackError) return undefined;
      throw error;
    }
    this.block = undefined;
    let rewritten = false;
    for (const field of fields) {
      if ((field.name === ':authority' || field.name === 'host') && !isServableAuthority(field.value)) {
        this.onRewrite(field.value);
        field.value = LOCAL_AUTHORITY;
        rewritten = true;
      }
    }
    if (this.firstBlock === 'pending') this.firstBlock = rewritten ? 'rewritten' : 'untouched';
    return frameHeaderBlock(block.streamId, block.endStream, block.priority, encodeHeaderBlock(fields));
  }

  private take(bytes: number): Buffer {
    const piece = this.input.subarray(0, bytes);
    this.input = this.input.subarray(bytes);
    this.consumed += bytes;
    return piece;
  }

  /** From here on the client's bytes pass as sent, starting with an open block's frames. */
  private giveUp(out: Buffer[]): Buffer[] {
    this.state = 'passthrough';
    if (this.firstBlock === 'pending') this.firstBlock = 'given up';
    if (this.block) out.push(...this.block.raw);
    this.block = undefined;
    if (this.input.length > 0) out.push(this.input);
    this.input = Buffer.alloc(0);
    return out;
  }
}

/** A HEADERS frame and as many CONTINUATIONs as the block needs, each within the server's frame size. */
function frameHeaderBlock(streamId: number, endStream: boolean, priority: Buffer | undefined, block: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  const firstRoom = DEFAULT_MAX_FRAME_SIZE_BYTES - (priority?.length ?? 0);
  let at = 0;
  let first = true;
  do {
    const room = first ? firstRoom : DEFAULT_MAX_FRAME_SIZE_BYTES;
    const piece = block.subarray(at, at + room);
    at += piece.length;
    const last = at >= block.length;
    let flags = last ? FLAG_END_HEADERS : 0;
    if (first && endStream) flags |= FLAG_END_STREAM;
    if (first && priority) flags |= FLAG_PRIORITY;
    const body = first && priority ? [priority, piece] : [piece];
    const length = body.reduce((sum, b) => sum + b.length, 0);
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUIntBE(length, 0, 3);
    header[3] = first ? TYPE_HEADERS : TYPE_CONTINUATION;
    header[4] = flags;
    header.writeUInt32BE(streamId, 5);
    frames.push(header, ...body);
    first = false;
  } while (at < block.length);
  return frames;
}
