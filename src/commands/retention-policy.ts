import type { StreamEntry } from '../projections/stream-catalogue.js';

/*
 * Retention: which events the local log may drop. Pure: the catalogue, the clock, the
 * log's size and the relay's position arrive as input; the answer is a list of streams
 * and how many of their oldest events to remove in this pass.
 *
 * Only ended streams are pruned (a removed container or sandbox, or a compensated
 * creation), whole, oldest first, and only when all of these hold:
 *  - no session is still open in the stream (its end event is still to come);
 *  - the live read models no longer hold it (`isLive`: not in the container or sandbox
 *    store, no saga in flight, no undelivered result);
 *  - it ended at least `minEndedAgeMs` ago (late appends: a session's end, a retry);
 *  - a container's sandbox stream, if still held, never recorded ResultUndelivered: the
 *    container's reservation may be what claimed it, and a replay without it would
 *    bring the claim back (and the unclaimed timer would remove a live pod);
 *  - with a relay configured, its last event is at or below the relay's published
 *    cursor: JetStream holds every event removed, so the audit trail stays whole;
 *  - with snapshots of the projections, its last event is before the oldest one a
 *    start may load (`snapshotSeq`): a snapshot taken while the container lived, then
 *    replayed without its removal, would bring it back.
 * Then the age rule prunes a stream whose last event is older than `maxAgeMs`, and the
 * size rule, while the log is above `maxBytes`, prunes the oldest eligible streams
 * until their recorded size covers the excess. A pass removes at most `batchEvents`.
 */

/** Retention off: nothing is ever removed. */
export const RETENTION_OFF = 0;
/** A stream must have ended this long ago before any rule may prune it. */
export const DEFAULT_RETENTION_MIN_ENDED_AGE_MS = 60_000;
/** Events one pass removes at most (one synced LevelDB batch). */
export const DEFAULT_RETENTION_BATCH_EVENTS = 1_000;
/** How often the service checks the rules. */
export const DEFAULT_RETENTION_INTERVAL_MS = 60_000;

export interface RetentionPolicy {
  /** Prune ended streams whose last event is older than this; 0 = no age rule. */
  maxAgeMs: number;
  /** Prune the oldest ended streams while the log's directory is larger; 0 = no size rule. */
  maxBytes: number;
  minEndedAgeMs: number;
  batchEvents: number;
}

export interface RetentionInput {
  policy: RetentionPolicy;
  nowMs: number;
  streams: Iterable<StreamEntry>;
  /** The log directory's size on disk. */
  logBytes: number;
  /**
   * Disk bytes per byte of recorded JSON (LevelDB compresses; each event is stored
   * twice): turns a stream's recorded size into what removing it frees. Default 2.
   */
  diskBytesPerJsonByte?: number;
  /** The relay's published cursor; undefined when no relay is configured. */
  publishedSeq: number | undefined;
  /** The seq of the oldest snapshot a start may load; undefined when none is kept. */
  snapshotSeq?: number | undefined;
  /** True while the live read models still hold the stream's container or sandbox. */
  isLive: (stream: string) => boolean;
}

export interface PrunePick {
  stream: string;
  /** How many of its oldest events to remove in this pass. */
  events: number;
  reason: 'age' | 'size';
}

/** Why ended streams were kept in this pass, counted for status and logs. */
export interface HeldBack {
  openSessions: number;
  /** Containers whose reservation may have claimed their sandbox's undelivered result. */
  claims: number;
  live: number;
  recent: number;
  unpublished: number;
  /** Ended after the oldest snapshot a start may load. */
  unsnapshotted: number;
}

export interface RetentionPlan {
  picks: PrunePick[];
  /** Ended streams that every safety rule allows to prune (whether or not a rule asked). */
  eligible: number;
  heldBack: HeldBack;
}

export function retentionEnabled(policy: Pick<RetentionPolicy, 'maxAgeMs' | 'maxBytes'>): boolean {
  return policy.maxAgeMs > RETENTION_OFF || policy.maxBytes > RETENTION_OFF;
}

/** Decides this pass's pruning. Never picks a stream that has not ended or is held back. */
export function planRetention(input: RetentionInput): RetentionPlan {
  const { policy, nowMs } = input;
  const heldBack: HeldBack = { openSessions: 0, claims: 0, live: 0, recent: 0, unpublished: 0, unsnapshotted: 0 };
  const eligible: StreamEntry[] = [];
  const streams = [...input.streams];
  const claimable = new Set(streams.filter((e) => e.undelivered).map((e) => e.stream));
  for (const entry of streams) {
    if (entry.endedAt === undefined) continue;
    if (entry.openSessions.length > 0) heldBack.openSessions++;
    else if (entry.sandboxId !== undefined && claimable.has(`sandbox-${entry.sandboxId}`)) heldBack.claims++;
    else if (input.isLive(entry.stream)) heldBack.live++;
    else if (nowMs - Date.parse(entry.lastAt) < policy.minEndedAgeMs) heldBack.recent++;
    else if (input.publishedSeq !== undefined && entry.lastSeq > input.publishedSeq) heldBack.unpublished++;
    // Strictly before it: the event at a snapshot's seq (how a start checks the snapshot
    // belongs to this log) is in a stream that stays too.
    else if (input.snapshotSeq !== undefined && entry.lastSeq >= input.snapshotSeq) heldBack.unsnapshotted++;
    else eligible.push(entry);
  }
  const plan: RetentionPlan = { picks: [], eligible: eligible.length, heldBack };
  if (!retentionEnabled(policy)) return plan;
  eligible.sort((a, b) => a.lastSeq - b.lastSeq);
  let budget = policy.batchEvents;
  const take = (entry: StreamEntry, reason: PrunePick['reason']): void => {
    const events = Math.min(entry.events, budget);
    plan.picks.push({ stream: entry.stream, events, reason });
    budget -= events;
  };
  const rest: StreamEntry[] = [];
  for (const entry of eligible) {
    if (budget <= 0) return plan;
    if (policy.maxAgeMs > RETENTION_OFF && nowMs - Date.parse(entry.lastAt) >= policy.maxAgeMs) take(entry, 'age');
    else rest.push(entry);
  }
  if (policy.maxBytes > RETENTION_OFF && input.logBytes > policy.maxBytes) {
    // Each event is stored twice (by seq and by stream), compressed: the ratio says how
    // much disk one recorded byte takes. The next pass measures again, so an estimate
    // off either way is corrected within a pass or two.
    const perByte = input.diskBytesPerJsonByte ?? 2;
    let excess = input.logBytes - policy.maxBytes;
    for (const entry of rest) {
      if (budget <= 0 || excess <= 0) break;
      take(entry, 'size');
      excess -= perByte * entry.bytes;
    }
  }
  return plan;
}
