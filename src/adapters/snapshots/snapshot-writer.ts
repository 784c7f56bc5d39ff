import type { Ledger } from '../../commands/ledger.js';
import { captureProjections, encodeSnapshot } from '../../projections/projection-snapshot.js';
import type { Logger } from '../logging/logger.js';
import type { FileSnapshotStore, SnapshotWriteStats } from './file-snapshot-store.js';

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
  private writing: Promise<void> | undefined;
  /** A trigger that came during a write: the fewest new events it asked for. */
  private again: number | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly o: SnapshotWriterOptions) {
    this.coveredSeq = o.ledger.loadedFrom.snapshot?.seq ?? 0;
  }

  /**
   * Starts watching the log. The newest snapshot counted is the one the load used: if a
   * newer one was skipped as damaged, the next write (at once when the log is
   * `everyEvents` past, else at the interval or at stop) replaces it.
   */
  start(): void {
    this.unsubscribe = this.o.ledger.log.onCommit(() => {
      if (this.due(this.o.everyEvents)) this.kick(this.o.everyEvents);
    });
    this.timer = setInterval(() => {
      if (this.due(1)) this.kick(1);
    }, this.o.intervalMs);
    this.timer.unref();
    if (this.due(this.o.everyEvents)) this.kick(this.o.everyEvents);
  }

  private due(events: number): boolean {
    return this.o.ledger.projections.position() - this.coveredSeq >= events;
  }

  /** A trigger nobody waits for: what could fail is logged in writeOne; this is for the unforeseen. */
  private kick(minEvents: number): void {
    this.trigger(minEvents).catch((error: unknown) => this.o.logger.warn({ err: error }, 'taking a snapshot failed'));
  }

  /**
   * Takes a snapshot now, or after the one being written if `minEvents` have come since
   * that one; resolves when it is written or has failed.
   */
  trigger(minEvents = 1): Promise<void> {
    if (this.writing) {
      this.again = Math.min(this.again ?? minEvents, minEvents);
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
    if (options.final && this.due(1)) await this.trigger(1);
    this.stopped = true;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
