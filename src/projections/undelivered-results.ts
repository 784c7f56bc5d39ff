import { assertNever } from '../domain/events.js';
import { parseStream, sandboxStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';

/*
 * Undelivered results: containers and sandboxes that were created but whose id reached
 * no caller (ResultUndelivered), and that nobody has claimed since. Keyed by stream.
 *
 *   ResultUndelivered ──> undelivered ──RetryServed (a retry with the same digest got it)──> (gone)
 *                              │  ──ContainerStarted or Exited (a start failed) / a container created
 *                              │    in the sandbox / SandboxStopped / a port forward to the pod
 *                              │      (someone used the id: delivered in fact)──> (gone)
 *                              └──ContainerRemoved / SandboxRemoved / Compensated──> (gone)
 *
 * A RetryServed whose own caller gave up is followed by a fresh ResultUndelivered,
 * so the doc comes back with the later times. Startup rebuilds this from the log, so
 * the unclaimed timers and the replace rule survive a restart.
 */

export interface UndeliveredResult {
  stream: string;
  kind: 'container' | 'sandbox';
  id: string;
  name: string;
  requestDigest: string;
  reason: 'cancelled' | 'deadline' | 'recovery';
  gaveUpAt: string;
  callerDeadline?: string;
  /** The seq of the ResultUndelivered: a timer armed for an older one is stale. */
  seq: number;
}

export const undeliveredResults: Projection<UndeliveredResult> = {
  name: 'undelivered',

  keysOf(event) {
    // A container created in a sandbox claims the sandbox: its creator knew the id.
    if (event.type === 'NameReserved') return [sandboxStream(event.data.sandboxId)];
    return event.stream.startsWith('container-') || event.stream.startsWith('sandbox-') ? [event.stream] : [];
  },

  evolve(doc, event) {
    switch (event.type) {
      case 'ResultUndelivered': {
        const { kind, id } = parseStream(event.stream);
        const d = event.data;
        return {
          stream: event.stream,
          kind: kind === 'sandbox' ? 'sandbox' : 'container',
          id,
          name: d.name,
          requestDigest: d.requestDigest,
          reason: d.reason,
          gaveUpAt: d.gaveUpAt,
          ...(d.callerDeadline === undefined ? {} : { callerDeadline: d.callerDeadline }),
          seq: event.seq,
        };
      }
      case 'RetryServed':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'NameReserved':
      case 'SandboxStopped':
      case 'PortForwardStarted':
      case 'ContainerRemoved':
      case 'SandboxRemoved':
      case 'Compensated':
        return undefined;
      case 'SpecGenerated':
      case 'SnapshotPrepared':
      case 'ContainerCreated':
      case 'SandboxReserved':
      case 'SandboxReady':
      case 'ContainerStopped':
      case 'ExecRan':
      case 'HostPathCreated':
      case 'ContainerResourcesUpdated':
      case 'ImagePullStarted':
      case 'ImagePullProgress':
      case 'ImagePulled':
      case 'ImagePullFailed':
      case 'ImageRemoved':
      case 'PodCidrUpdated':
      case 'RuntimeReconciled':
      case 'RecoveryDecided':
      case 'OperationStalled':
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
      case 'PortForwardEnded':
        return doc;
      default:
        return assertNever(event);
    }
  },
};

/** When an undelivered result counts as unclaimed: `timeoutMs` past the caller's deadline (or when it gave up, without one). */
export function unclaimedAtMs(result: UndeliveredResult, timeoutMs: number): number {
  return Date.parse(result.callerDeadline ?? result.gaveUpAt) + timeoutMs;
}

/** The results unclaimed at `nowMs`, oldest first, and when the next one falls due (undefined: none left). */
export function dueUnclaimed(
  results: Iterable<UndeliveredResult>,
  nowMs: number,
  timeoutMs: number,
): { due: UndeliveredResult[]; nextAtMs: number | undefined } {
  const due: UndeliveredResult[] = [];
  let nextAtMs: number | undefined;
  for (const r of results) {
    const at = unclaimedAtMs(r, timeoutMs);
    if (at <= nowMs) due.push(r);
    else nextAtMs = nextAtMs === undefined ? at : Math.min(nextAtMs, at);
  }
  due.sort((a, b) => a.seq - b.seq);
  return { due, nextAtMs };
}
