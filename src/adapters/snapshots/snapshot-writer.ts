import type { Ledger } from '../../commands/ledger.js';
import { captureProjections, encodeSnapshot } from '../../projections/projection-snapshot.js';
import type { Logger } from '../logging/logger.js';
import type { FileSnapshotStore, SnapshotWriteStats } from './file-snapshot-store.js';

/** Why a snapshot is taken: enough events since the last attempt, or any change at all (interval, stop). */
type Reason = 'events' | 'changed';

export interface SnapshotWriterOptions {
  ledger: Ledger;
  store: FileSnapshotStore;
  /** A snapshot once this many events came since the newest one (the `snapshots.*` config keys). */
  everyEvents: number;
  /** ... and every this long if any event came since. */
  intervalMs: number;
  /** Snapshots kept: the newest, and older ones to fall back on if it is damaged. */
  keep: number;
  logger: Logger;
}

/**
 * Writes snapshots of the projections in the background: after `everyEvents` events,
 * and every `intervalMs` when anything happened. One write at a time; a trigger during
 * a write is taken up when it ends. A failed write is logged and changes nothing: the
 * log stays the source of truth, and the next start replays a little more.
 */
export class SnapshotWriter {
  /** The seq the newest snapshot covers (stored or being written). */
  private coveredSeq: number;
  /**
   * The seq of the last attempt, written or failed. The event count runs from here, so a
   * disk that refuses every write sees one attempt per `everyEvents` events (and one per
   * interval), not one per committed batch.
   */
  private attemptedSeq: number;
  private writing: Promise<void> | undefined;
  /** A trigger that came during a write, and what it asked for (`changed` asks less). */
  private again: Reason | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly o: SnapshotWriterOptions) {
    this.coveredSeq = o.ledger.loadedFrom.snapshot?.seq ?? 0;
    this.attemptedSeq = this.coveredSeq;
  }

  /**
   * Starts watching the log. The newest snapshot counted is the one the load used: if a
   * newer one was skipped as damaged, the next write (at once when the log is
   * `everyEvents` past, else at the interval or at stop) replaces it.
   */
  start(): void {
    this.unsubscribe = this.o.ledger.log.onCommit(() => {
      if (this.due('events')) this.kick('events');
    });
    this.timer = setInterval(() => {
      if (this.due('changed')) this.kick('changed');
    }, this.o.intervalMs);
    this.timer.unref();
    if (this.due('events')) this.kick('events');
  }

  /** `events`: everyEvents since the last attempt; `changed`: anything since the newest snapshot. */
  private due(reason: Reason): boolean {
    const position = this.o.ledger.projections.position();
    return reason === 'events' ? position - this.attemptedSeq >= this.o.everyEvents : position > this.coveredSeq;
  }

  /** A trigger nobody waits for: what could fail is logged in writeOne; this is for the unforeseen. */
  private kick(reason: Reason): void {
    this.trigger(reason).catch((error: unknown) => this.o.logger.warn({ err: error }, 'taking a snapshot failed'));
  }

  /**
   * Takes a snapshot now, or after the one being written if it is still `reason`-due
   * then; resolves when it is written or has failed.
   */
  trigger(reason: Reason = 'changed'): Promise<void> {
    if (this.writing) {
      this.again = this.again === 'changed' ? 'changed' : reason;
      return this.writing;
    }
    this.writing = (async () => {
      try {
        for (;;) {
          this.again = undefined;
          await this.writeOne();
          if (this.again === undefined || this.stopped || !this.due(this.again)) break;
        }
      } finally {
        this.writing = undefined;
      }
    })();
    return this.writing;
  }

  private async writeOne(): Promise<void> {
    const captureStarted = performance.now();
    // Synchronous: the projections cannot move between the capture's first and last document.
    const captured = captureProjections(this.o.ledger.projections);
    const captureMs = performance.now() - captureStarted;
    if (!captured || captured.header.seq <= this.coveredSeq) return;
    const seq = captured.header.seq;
    this.attemptedSeq = seq;
    let stats: SnapshotWriteStats;
    try {
      stats = await this.o.store.write(seq, encodeSnapshot(captured));
    } catch (error) {
      this.o.logger.warn({ err: error, seq }, 'writing a snapshot of the projections failed; the log is unaffected');
      return;
    }
    this.coveredSeq = seq;
    const removed = await this.o.store.prune(this.o.keep).catch((error: unknown) => {
      this.o.logger.warn({ err: error }, 'removing old snapshots failed');
      return [];
    });
    this.o.logger.info(
      {
        seq,
        file: stats.location,
        bytes: stats.bytes,
        documents: Object.values(captured.header.counts).reduce((a, b) => a + b, 0),
        captureMs: round(captureMs),
        longestSliceMs: round(stats.longestSliceMs),
        totalMs: round(stats.totalMs),
        removed: removed.length,
      },
      'wrote a snapshot of the projections',
    );
  }

  /** Stops triggering; with `final`, writes one last snapshot if anything happened since the newest. */
  async stop(options: { final: boolean }): Promise<void> {
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    await this.writing;
    if (options.final && this.due('changed')) await this.trigger('changed');
    this.stopped = true;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
