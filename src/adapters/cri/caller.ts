import type { Deadline } from '@grpc/grpc-js';
import type { Caller } from '../../commands/ports.js';

/** What this needs of a grpc-js ServerUnaryCall. */
export interface CancellableCall {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  on(event: 'cancelled', listener: () => void): unknown;
}

/*
 * Whether the caller of a CRI request still waits for its answer, as grpc-js sees it:
 * the call was cancelled (the client went away, or its deadline passed and grpc-js
 * ended the call), or the deadline the client sent has passed. CreateContainer and
 * RunPodSandbox keep going past the deadline (as CRI-O does); once their result is
 * ready they ask this, and record ResultUndelivered when nobody is left to get it.
 *
 * An answer sent in the last instant before the deadline counts as delivered, even if
 * it then arrives late: the server cannot see when the client reads it. A retry with
 * the same request is still served the same id; see docs/decisions.md.
 */
/** The caller's deadline as ms since the epoch; undefined when it set none (grpc-js says Infinity then). */
export function deadlineMsOf(call: Pick<CancellableCall, 'getDeadline'>): number | undefined {
  const raw = call.getDeadline();
  const ms = raw instanceof Date ? raw.getTime() : Number(raw);
  return Number.isFinite(ms) ? ms : undefined;
}

export function callerOf(call: CancellableCall, clock: () => number = Date.now): Caller {
  const deadlineMs = deadlineMsOf(call) ?? Infinity;
  const hasDeadline = deadlineMs !== Infinity;
  let cancelledAtMs: number | undefined;
  call.on('cancelled', () => {
    cancelledAtMs ??= clock();
  });
  return {
    ...(hasDeadline ? { deadline: new Date(deadlineMs).toISOString() } : {}),
    gaveUp() {
      // The deadline first: grpc-js cancels the call when it passes, and that is why.
      if (hasDeadline && clock() >= deadlineMs) return { at: new Date(deadlineMs).toISOString(), reason: 'deadline' };
      if (cancelledAtMs !== undefined || call.cancelled)
        return { at: new Date(cancelledAtMs ?? clock()).toISOString(), reason: 'cancelled' };
      return undefined;
    },
  };
}
