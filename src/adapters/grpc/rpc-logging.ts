import { ServerInterceptingCall, status as Status, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from 'pino';
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

/**
 * Codes that mean the caller asked for something wrong, or the service is going away:
 * worth a warning, not a sign the service is broken.
 */
const WARN_CODES = new Set<Status>([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.ALREADY_EXISTS,
  Status.FAILED_PRECONDITION,
  Status.ABORTED,
  Status.OUT_OF_RANGE,
  Status.UNAUTHENTICATED,
  Status.PERMISSION_DENIED,
  Status.DEADLINE_EXCEEDED,
  Status.UNAVAILABLE,
]);

/**
 * Logs one line per RPC when it ends: method, duration, status code and the caller's
 * correlation id. Successful and cancelled calls log at debug (kubelet polls several
 * RPCs a second per pod), caller errors and shutdown at warn, service failures at error.
 */
export function rpcLoggingInterceptor(logger: Logger): ServerInterceptor {
  return (method, call) => {
    const startedAt = performance.now();
    let correlationId: string | undefined;
    let logged = false;
    const finish = (code: Status, details?: string): void => {
      if (logged) return;
      logged = true;
      const line: Record<string, unknown> = {
        rpc: method.path,
        durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
        code: Status[code] ?? code,
      };
      if (correlationId !== undefined) line.correlationId = correlationId;
      if (code === Status.OK || code === Status.CANCELLED) logger.debug(line, 'rpc');
      else if (WARN_CODES.has(code)) logger.warn({ ...line, details }, 'rpc');
      else logger.error({ ...line, details }, 'rpc');
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            // A call without one gets one here, so the log line and the events it
            // causes carry the same id.
            correlationId = correlationIdFrom(metadata);
            if (correlationId === undefined) {
              correlationId = newEventId();
              metadata.set(CORRELATION_METADATA_KEYS[0], correlationId);
            }
            nextMetadata(metadata);
          },
          onCancel() {
            finish(Status.CANCELLED);
          },
        });
      },
      sendStatus(status, next) {
        finish(status.code, status.details);
        next(status);
      },
    });
  };
}
