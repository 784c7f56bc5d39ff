/*
 * SPDY/3.1 framing, the subset the Kubernetes streaming clients use (the frame layout of
 * draft-mbelshe-httpbis-spdy-00, version 3): every frame has an 8-byte header; a control
 * frame starts with the bit 0x80, the version (3) and its type, then flags and a 24-bit
 * length; a data frame starts with a 31-bit stream id, then flags and the length.
 */

export const SPDY_VERSION = 3;
export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
/** Header blocks are small; a larger control frame is a broken or hostile peer. */
export const MAX_CONTROL_FRAME_BYTES = 1 << 20;
/** The largest DATA frame written: large enough for throughput, small enough to interleave streams. */
export const MAX_DATA_FRAME_BYTES = 64 * 1024;

const TYPE = {
  synStream: 1,
  synReply: 2,
  rstStream: 3,
  settings: 4,
  ping: 6,
  goAway: 7,
  headers: 8,
  windowUpdate: 9,
} as const;

/** RST_STREAM status codes. */
export const RST = { protocolError: 1, invalidStream: 2, refusedStream: 3, cancel: 5 } as const;

export type SpdyFrame =
  | { type: 'data'; streamId: number; fin: boolean; data: Buffer }
  | { type: 'syn-stream'; streamId: number; fin: boolean; headerBlock: Buffer }
  | { type: 'rst-stream'; streamId: number; status: number }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastStreamId: number }
  | { type: 'ignored'; name: string };

export class SpdyProtocolError extends Error {
  override readonly name = 'SpdyProtocolError';
}

/** Splits a byte stream into frames; keeps a partial frame across pushes without copying per chunk. */
export class FrameReader {
  #chunks: Buffer[] = [];
  #length = 0;

  push(chunk: Buffer): SpdyFrame[] {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const frames: SpdyFrame[] = [];
    for (;;) {
      if (this.#length < 8) break;
      const head = this.#peek(8);
      const bodyLength = head.readUIntBE(5, 3);
      const control = (head[0]! & 0x80) !== 0;
      if (control && bodyLength > MAX_CONTROL_FRAME_BYTES)
        throw new SpdyProtocolError(`control frame of ${bodyLength} bytes`);
      if (this.#length < 8 + bodyLength) break;
      const frame = this.#take(8 + bodyLength);
      frames.push(decodeFrame(frame));
    }
    return frames;
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!;
    const joined = Buffer.concat(this.#chunks);
    this.#chunks = [joined];
    return joined;
  }

  #take(n: number): Buffer {
    const first = this.#peek(n);
    const frame = first.subarray(0, n);
    const rest = first.subarray(n);
    this.#chunks[0] = rest;
    if (rest.length === 0) this.#chunks.shift();
    this.#length -= n;
    return frame;
  }
}

function decodeFrame(frame: Buffer): SpdyFrame {
  const flags = frame[4]!;
  const body = frame.subarray(8);
  if ((frame[0]! & 0x80) === 0) {
    return { type: 'data', streamId: frame.readUInt32BE(0) & 0x7fffffff, fin: (flags & FLAG_FIN) !== 0, data: body };
  }
  const version = frame.readUInt16BE(0) & 0x7fff;
  if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY version ${version}, not ${SPDY_VERSION}`);
  const type = frame.readUInt16BE(2);
  const need = (n: number, what: string): void => {
    if (body.length < n) throw new SpdyProtocolError(`short ${what} frame`);
  };
  switch (type) {
    case TYPE.synStream:
      need(10, 'SYN_STREAM');
      return {
        type: 'syn-stream',
        streamId: body.readUInt32BE(0) & 0x7fffffff,
        fin: (flags & FLAG_FIN) !== 0,
        headerBlock: body.subarray(10),
      };
    case TYPE.rstStream:
      need(8, 'RST_STREAM');
      return { type: 'rst-stream', streamId: body.readUInt32BE(0) & 0x7fffffff, status: body.readUInt32BE(4) };
    case TYPE.ping:
      need(4, 'PING');
      return { type: 'ping', id: body.readUInt32BE(0) };
    case TYPE.goAway:
      need(4, 'GOAWAY');
      return { type: 'goaway', lastStreamId: body.readUInt32BE(0) & 0x7fffffff };
    case TYPE.synReply:
      // Clients never answer streams this server does not open.
      return { type: 'ignored', name: 'SYN_REPLY' };
    case TYPE.settings:
      return { type: 'ignored', name: 'SETTINGS' };
    case TYPE.headers:
      return { type: 'ignored', name: 'HEADERS' };
    case TYPE.windowUpdate:
      // Neither spdystream nor this server does flow control: TCP's is the only one.
      return { type: 'ignored', name: 'WINDOW_UPDATE' };
    default:
      return { type: 'ignored', name: `type ${type}` };
  }
}

function control(type: number, flags: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE((((flags & 0xff) << 24) | body.length) >>> 0, 4);
  return Buffer.concat([head, body]);
}

export function dataFrameHead(streamId: number, length: number, fin: boolean): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head.writeUInt32BE((((fin ? FLAG_FIN : 0) << 24) | length) >>> 0, 4);
  return head;
}

export function synReplyFrame(streamId: number, headerBlock: Buffer): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(streamId & 0x7fffffff, 0);
  return control(TYPE.synReply, 0, Buffer.concat([id, headerBlock]));
}

export function rstStreamFrame(streamId: number, status: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(streamId & 0x7fffffff, 0);
  body.writeUInt32BE(status, 4);
  return control(TYPE.rstStream, 0, body);
}

export function pingFrame(id: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeUInt32BE(id >>> 0, 0);
  return control(TYPE.ping, 0, body);
}

/** GOAWAY with status OK, naming the last stream the peer opened that this side handled. */
export function goAwayFrame(lastStreamId: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  return control(TYPE.goAway, 0, body);
}
