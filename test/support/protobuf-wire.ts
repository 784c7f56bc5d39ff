/*
 * The protobuf wire format, written by hand so a test can send what no protobuf library
 * would: strings that are not UTF-8, a field with the wrong wire type, a truncated
 * length, an endless varint, groups nested thousands deep. Decoding is left to the
 * service under test, except splitting a message into its top-level fields.
 */

export const WIRE = { varint: 0, fixed64: 1, bytes: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;
export type WireType = (typeof WIRE)[keyof typeof WIRE];

/** A varint of a non-negative integer below 2^64 (negative int64s: pass their two's complement, `BigInt.asUintN(64, v)`). */
export function varint(value: bigint | number): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v > 0n);
  return Buffer.from(bytes);
}

/** A field's tag; `wire` is any number, so a test can also send the undefined wire types 6 and 7. */
export function tag(field: number, wire: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wire & 7));
}

/** A length-delimited field: strings (any bytes), embedded messages, packed lists. */
export function lengthDelimited(field: number, payload: Buffer): Buffer {
  return Buffer.concat([tag(field, WIRE.bytes), varint(payload.length), payload]);
}

export function varintField(field: number, value: bigint | number): Buffer {
  return Buffer.concat([tag(field, WIRE.varint), varint(value)]);
}

export function fixed32Field(field: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return Buffer.concat([tag(field, WIRE.fixed32), b]);
}

export function fixed64Field(field: number, value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, value));
  return Buffer.concat([tag(field, WIRE.fixed64), b]);
}

/** `depth` start-group tags for `field`, then as many end-group tags: a message nested `depth` levels deep. */
export function nestedGroups(field: number, depth: number): Buffer {
  const start = tag(field, WIRE.startGroup);
  const end = tag(field, WIRE.endGroup);
  return Buffer.concat([Buffer.alloc(depth * start.length, start), Buffer.alloc(depth * end.length, end)]);
}

/** The gRPC length-prefixed message frame: a compressed flag, a 4-byte big-endian length, the message. */
export function grpcFrame(message: Buffer, declaredLength = message.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([header, message]);
}

/** Splits a message into its top-level fields, groups skipped whole (undefined when it is not well-formed). */
export function splitFields(
  bytes: Buffer,
): Array<{ number: number; wire: number; raw: Buffer; payload?: Buffer }> | undefined {
  const out: Array<{ number: number; wire: number; raw: Buffer; payload?: Buffer }> = [];
  let i = 0;
  const readVarint = (): bigint | undefined => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= bytes.length) return undefined;
      const b = bytes[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
    return undefined;
  };
  while (i < bytes.length) {
    const start = i;
    const key = readVarint();
    if (key === undefined) return undefined;
    const wire = Number(key & 7n);
    const number = Number(key >> 3n);
    if (wire === WIRE.varint) {
      if (readVarint() === undefined) return undefined;
      out.push({ number, wire, raw: bytes.subarray(start, i) });
    } else if (wire === WIRE.bytes) {
      const len = readVarint();
      if (len === undefined || i + Number(len) > bytes.length) return undefined;
      const payload = bytes.subarray(i, i + Number(len));
      i += Number(len);
      out.push({ number, wire, raw: bytes.subarray(start, i), payload });
    } else if (wire === WIRE.fixed32 || wire === WIRE.fixed64) {
      i += wire === WIRE.fixed32 ? 4 : 8;
      if (i > bytes.length) return undefined;
      out.push({ number, wire, raw: bytes.subarray(start, i) });
    } else if (wire === WIRE.startGroup) {
      // Skip to the matching end-group tag; every tag inside counts only by its wire type.
      let depth = 1;
      while (depth > 0) {
        const inner = readVarint();
        if (inner === undefined) return undefined;
        const w = Number(inner & 7n);
        if (w === WIRE.startGroup) depth++;
        else if (w === WIRE.endGroup) depth--;
        else if (w === WIRE.varint) {
          if (readVarint() === undefined) return undefined;
        } else if (w === WIRE.bytes) {
          const len = readVarint();
          if (len === undefined || i + Number(len) > bytes.length) return undefined;
          i += Number(len);
        } else if (w === WIRE.fixed32 || w === WIRE.fixed64) {
          i += w === WIRE.fixed32 ? 4 : 8;
          if (i > bytes.length) return undefined;
        } else return undefined;
      }
      out.push({ number, wire, raw: bytes.subarray(start, i) });
    } else {
      return undefined;
    }
  }
  return out;
}
