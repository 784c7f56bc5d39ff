/*
 * The protobuf wire format, written by hand so a test can send what no protobuf library
 * would: strings that are not UTF-8, a field with the wrong wire type, a truncated
 * length, an endless varint, groups nested thousands deep. Only encoding; the service
 * under test does the decoding.
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

export function tag(field: number, wire: WireType | number): Buffer {
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
