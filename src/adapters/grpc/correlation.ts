import type { Metadata } from '@grpc/grpc-js';
import { newEventId } from '../ids/event-id.js';

/** Metadata keys a caller may set to tie its calls to its own request id. */
export const CORRELATION_METADATA_KEYS = ['x-correlation-id', 'correlation-id'] as const;

/** The call's correlation id; served through the socket, the RPC interceptor has set one. */
export function correlationIdOf(call: { metadata: Metadata }): string {
  return correlationIdFrom(call.metadata) ?? newEventId();
}

/** The correlation id a call carries, if any (the interceptor gives every call one). */
export function correlationIdFrom(metadata: Metadata): string | undefined {
  for (const key of CORRELATION_METADATA_KEYS) {
    const value = metadata.get(key)[0];
    if (value !== undefined && String(value).length > 0) return String(value);
  }
  return undefined;
}
