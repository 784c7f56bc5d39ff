/*
 * HTTP/2 frames written and read by hand, for tests that send what no client library
 * would, or must see exactly which frames a server answered with.
 */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
};

/** One frame; `declaredLength` may lie about the payload. */
export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer,
  declaredLength = payload.length,
): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(declaredLength, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([header, payload]);
}

export interface ParsedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** The complete frames in `bytes`, in order. */
export function parseFrames(bytes: Buffer): ParsedFrame[] {
  const frames: ParsedFrame[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    if (at + 9 + length > bytes.length) break;
    frames.push({
      type: bytes[at + 3]!,
      flags: bytes[at + 4]!,
      streamId: bytes.readUInt32BE(at + 5) & 0x7fffffff,
      payload: bytes.subarray(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return frames;
}

/** The error code of the first complete GOAWAY frame in `bytes`, if any. */
export function goAwayCode(bytes: Buffer): number | undefined {
  const goAway = parseFrames(bytes).find((f) => f.type === FRAME.GOAWAY && f.payload.length >= 8);
  return goAway?.payload.readUInt32BE(4);
}
