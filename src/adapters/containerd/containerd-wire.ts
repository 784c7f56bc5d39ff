/*
 * Shapes of the few well-known types every containerd message uses, as
 * CONTAINERD_LOADER_OPTIONS decodes them, and conversions that keep full precision.
 */

/** Any type URL containerd uses for an OCI runtime spec, stored as JSON. */
export const OCI_SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

/** google.protobuf.Any: the payload's type and its bytes (JSON for OCI types). */
export interface WireAny {
  type_url: string;
  value: Buffer;
}

/** google.protobuf.Timestamp with int64 seconds as a decimal string. */
export interface WireTimestamp {
  seconds: string;
  nanos: number;
}

/** An Any holding `value` as JSON, as containerd stores OCI specs and resources. */
export function jsonAny(typeUrl: string, value: unknown): WireAny {
  return { type_url: typeUrl, value: Buffer.from(JSON.stringify(value)) };
}

/** The JSON payload of an Any made by jsonAny (or by containerd for OCI types). */
export function parseJsonAny<T = unknown>(any: WireAny): T {
  return JSON.parse(Buffer.from(any.value).toString('utf8')) as T;
}

/** Nanoseconds since the epoch, exactly (a Date would drop everything below 1 ms). */
export function timestampToNanos(timestamp: WireTimestamp): bigint {
  return BigInt(timestamp.seconds) * 1_000_000_000n + BigInt(timestamp.nanos);
}

/** The Timestamp for `nanos` since the epoch. */
export function nanosToTimestamp(nanos: bigint): WireTimestamp {
  const seconds = nanos / 1_000_000_000n;
  const rest = nanos % 1_000_000_000n;
  // Timestamp nanos are never negative, also before 1970.
  if (rest < 0n) return { seconds: String(seconds - 1n), nanos: Number(rest + 1_000_000_000n) };
  return { seconds: String(seconds), nanos: Number(rest) };
}

/** The time as a Date (millisecond precision, for logs and display). */
export function timestampToDate(timestamp: WireTimestamp): Date {
  return new Date(Number(timestampToNanos(timestamp) / 1_000_000n));
}
