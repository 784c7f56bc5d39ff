import { ServerInterceptingCall, status as Status, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { newEventId } from '../ids/event-id.js';
import { CORRELATION_METADATA_KEYS, correlationIdFrom } from './correlation.js';
import { boundedDetails, MAX_STATUS_DETAILS_CHARS } from './status-limit.js';

/** What an observer is told about a call when its metadata arrives. */
export interface ObservedCall {
  /** `/package.Service/Method`. */
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  metadata: Metadata;
  /** The caller's, or the one given to the call here; every event the call causes carries it. */
  correlationId: string;
}

/** Hears when a call ends: its code and (bounded) details. */
export type CallEnded = (code: Status, details: string | undefined) => void;

/** Metrics and tracing: told of each call as it starts, and of its end through what they return. */
export interface CallObserver {
  callStarted(call: ObservedCall): CallEnded | undefined;
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
 * The one interceptor of the socket: it gives each call a correlation id (unless the
 * caller sent one), bounds the status message (status-limit.ts), logs one line when the
 * call ends, and tells the observers (metrics, tracing).
 *
 * One interceptor rather than one per concern: each grpc-js interceptor wraps every call
 * in another intercepting call and listener, a cost every call pays (docs/decisions.md,
 * decision 53). Successful and cancelled calls log at debug (kubelet polls several RPCs
 * a second per pod), caller errors and shutdown at warn, service failures at error.
 */
export function callInterceptor(logger: Logger, observers: readonly CallObserver[] = []): ServerInterceptor {
  return (method, call) => {
    const startedAt = performance.now();
    let correlationId: string | undefined;
    let ended: CallEnded[] | undefined;
    let finished = false;
    const finish = (code: Status, details?: string): void => {
      if (finished) return;
      finished = true;
      if (ended) for (const hear of ended) hear(code, details);
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
            correlationId = correlationIdFrom(metadata);
            if (correlationId === undefined) {
              correlationId = newEventId();
              metadata.set(CORRELATION_METADATA_KEYS[0], correlationId);
            }
            if (observers.length > 0) {
              const observed: ObservedCall = {
                path: method.path,
                requestStream: method.requestStream,
                responseStream: method.responseStream,
                metadata,
                correlationId,
              };
              for (const observer of observers) {
                const hear = observer.callStarted(observed);
                if (hear) (ended ??= []).push(hear);
              }
            }
            nextMetadata(metadata);
          },
          onCancel() {
            finish(Status.CANCELLED);
          },
        });
      },
      sendStatus(status, next) {
        const bounded =
          status.details.length > MAX_STATUS_DETAILS_CHARS
            ? { ...status, details: boundedDetails(status.details) }
            : status;
        finish(bounded.code, bounded.details);
        next(bounded);
      },
    });
  };
}

/**
 * Counts the calls running on the service's socket (an observer of its interceptor),
 * so the warm-up goes in the gaps between them. Measured: warm-up calls running
 * alongside a client's first calls made those 2.7-3.6 ms instead of about 1 ms
 * (docs/benchmarks.md, cri-go; warm-up.ts).
 */
export class CallActivity implements CallObserver {
  private running = 0;
  private lastEnd = 0;

  callStarted(): CallEnded {
    this.running++;
    return () => {
      this.running--;
      this.lastEnd = performance.now();
    };
  }

  /** No call running, and none ended in the last `ms`. */
  quietFor(ms: number): boolean {
    return this.running === 0 && performance.now() - this.lastEnd >= ms;
  }
}
