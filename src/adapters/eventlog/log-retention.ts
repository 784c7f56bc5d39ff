import type { Logger } from 'pino';
import { RELAY_CURSOR } from '../bus/outbox-cursor.js';
import {
  DEFAULT_RETENTION_INTERVAL_MS,
  planRetention,
  type HeldBack,
  type RetentionPolicy,
} from '../../commands/retention-policy.js';
import { encodeEvent, type LedgerEvent } from '../../domain/events.js';
import { afterPrune, catalogued, evolveStreamEntry, type StreamEntry } from '../../projections/stream-catalogue.js';
import type { LevelDbEventLog } from './leveldb-event-log.js';
import type { PruneSummary, Tombstone } from './pruned-index.js';

/** Full batches a drain removes before it compacts anyway (the estimate of what they freed drifts). */
export const MAX_BATCHES_UNCOMPACTED = 10;

/** A pass that used its whole batch runs again after this pause, so a backlog drains without holding up appends. */
export const DEFAULT_RETENTION_BACKLOG_PAUSE_MS = 200;

export interface LogRetentionOptions {
  log: LevelDbEventLog;
  policy: RetentionPolicy;
  /** True when a NATS relay is configured: only what it published may go. */
  relay: boolean;
  /** True while the live read models still hold the stream's container or sandbox. */
  isLive: (stream: string) => boolean;
  /**
   * The seq of the oldest snapshot of the projections a start may load (undefined: none).
   * A stream that ended after it must stay: see retention-policy.ts.
   */
  snapshotSeq?: () => Promise<number | undefined>;
  logger: Logger;
  intervalMs?: number;
  now?: () => number;
}

/** What retention did and why it kept what it kept (Status, logs). */
export interface RetentionStatus {
  policy: RetentionPolicy;
  /** False until the catalogue has read the log once. */
  ready: boolean;
  /** Streams the catalogue holds, and how many of them ended. */
  streams: number;
  ended: number;
  lastPass?: { at: string; events: number; streams: number; eligible: number; heldBack: HeldBack; ms: number };
  pruned?: PruneSummary;
  lastError?: string;
}

/**
 * Runs the retention policy in the service, in the background: a catalogue of the
 * container and sandbox streams (read from the log once, then kept current from each
 * committed batch), and every `intervalMs` a pass that removes at most one batch of
 * eligible events in one synced LevelDB write. A pass that filled its batch runs again
 * shortly after, so a backlog drains a batch at a time with appends in between.
 */
export class LogRetention {
  private readonly catalogue = new Map<string, StreamEntry>();
  private ready = false;
  private passing = false;
  /** Streams pruned since the last compaction, and the disk they are estimated to free. */
  private uncompacted: Tombstone[] = [];
  private freedUncompacted = 0;
  private batchesUncompacted = 0;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private readonly unsubscribe: () => void;
  private held: Array<readonly LedgerEvent[]> | undefined = [];
  private readonly now: () => number;
  private lastPass: RetentionStatus['lastPass'];
  private lastError: string | undefined;

  private constructor(private readonly o: LogRetentionOptions) {
    this.now = o.now ?? Date.now;
    this.unsubscribe = o.log.onCommit((events) => {
      if (this.held) this.held.push(events);
      else this.note(events);
    });
  }

  /** Starts the catalogue's read of the log and the passes; resolves at once. */
  static start(o: LogRetentionOptions): LogRetention {
    const r = new LogRetention(o);
    r.running = r.load().then(
      () => r.schedule(0),
      (error: unknown) => {
        r.lastError = String(error);
        o.logger.error({ err: error }, 'retention could not read the log; nothing will be pruned');
      },
    );
    return r;
  }

  /** Reads the log once into the catalogue (a background scan), then follows commits. */
  private async load(): Promise<void> {
    const head = this.o.log.head();
    for await (const record of this.o.log.readRecords({ toSeq: head })) {
      if (this.stopped) return;
      // The startup replay has just decoded and checked every one of these records (a
      // bad one stops startup): parsing them again is enough here, at a fraction of the
      // cost. An unknown type still fails, in evolveStreamEntry's exhaustive switch.
      const event = JSON.parse(record.json) as LedgerEvent;
      if (catalogued(event.stream)) this.apply(event, record.json.length);
    }
    for (const batch of this.held ?? []) this.note(batch);
    this.held = undefined;
    this.ready = true;
  }

  private note(events: readonly LedgerEvent[]): void {
    for (const e of events) if (catalogued(e.stream)) this.apply(e, encodeEvent(e).length);
  }

  private apply(event: LedgerEvent, bytes: number): void {
    this.catalogue.set(event.stream, evolveStreamEntry(this.catalogue.get(event.stream), event, bytes));
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.pass().then((full) =>
        this.schedule(full ? DEFAULT_RETENTION_BACKLOG_PAUSE_MS : (this.o.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS)),
      );
    }, delayMs);
    this.timer.unref?.();
  }

  /** One pass; true when it used its whole batch (more may be waiting). */
  async pass(): Promise<boolean> {
    // One pass at a time: the catalogue is updated from each pass's result.
    if (!this.ready || this.stopped || this.passing) return false;
    this.passing = true;
    try {
      return await this.prunePass();
    } finally {
      this.passing = false;
    }
  }

  private async prunePass(): Promise<boolean> {
    const started = performance.now();
    const log = this.o.log;
    try {
      const nowMs = this.now();
      // The directory, less what passes since the last compaction freed but LevelDB has
      // not reclaimed yet (an estimate; a compaction resets it to the measure).
      const measured = this.o.policy.maxBytes > 0 ? await log.diskBytes() : 0;
      const logBytes = Math.max(0, measured - this.freedUncompacted);
      let recorded = 0;
      for (const e of this.catalogue.values()) recorded += e.bytes;
      const perJsonByte = recorded > 0 ? Math.min(2, Math.max(0.05, logBytes / recorded)) : 2;
      const plan = planRetention({
        policy: this.o.policy,
        nowMs,
        streams: this.catalogue.values(),
        logBytes,
        // Image and node streams are not catalogued: the ratio errs high, so a pass frees less, never more.
        diskBytesPerJsonByte: perJsonByte,
        publishedSeq: this.o.relay ? await log.readCursor(RELAY_CURSOR) : undefined,
        snapshotSeq: await this.o.snapshotSeq?.(),
        isLive: this.o.isLive,
      });
      let events = 0;
      const results =
        plan.picks.length === 0
          ? []
          : await log.prune(
              plan.picks.map((p) => ({ stream: p.stream, limit: p.events })),
              new Date(nowMs).toISOString(),
            );
      for (const r of results) {
        events += r.events;
        const entry = this.catalogue.get(r.tombstone.stream);
        const next = entry && afterPrune(entry, r);
        if (next) this.catalogue.set(r.tombstone.stream, next);
        else this.catalogue.delete(r.tombstone.stream);
      }
      const full = events > 0 && events >= this.o.policy.batchEvents;
      // Only the size rule needs the space back (it measures the directory); under the age
      // rule LevelDB's own compactions reclaim it, without the cost to appends. And once
      // per drain, not per batch: each compaction of the removed range took ~0.5 s, and
      // per batch it made the passes slower than a fast churn (bench retention).
      if (this.o.policy.maxBytes > 0) {
        for (const r of results) {
          this.uncompacted.push(r.tombstone);
          this.freedUncompacted += r.bytes * perJsonByte;
        }
        if (this.uncompacted.length > 0 && (!full || ++this.batchesUncompacted >= MAX_BATCHES_UNCOMPACTED)) {
          await log.compactPruned(this.uncompacted);
          this.uncompacted = [];
          this.freedUncompacted = 0;
          this.batchesUncompacted = 0;
        }
      }
      const ms = performance.now() - started;
      this.lastPass = {
        at: new Date(nowMs).toISOString(),
        events,
        streams: results.length,
        eligible: plan.eligible,
        heldBack: plan.heldBack,
        ms,
      };
      this.lastError = undefined;
      if (events > 0) {
        const reasons = [...new Set(plan.picks.map((p) => p.reason))];
        this.o.logger.info(
          { events, streams: results.length, reasons, heldBack: plan.heldBack, ms: Math.round(ms) },
          'retention pruned ended streams from the log',
        );
      }
      return full;
    } catch (error) {
      this.lastError = String(error);
      if (!this.stopped) this.o.logger.warn({ err: error }, 'retention pass failed; the next one tries again');
      return false;
    }
  }

  /** Resolves once the catalogue has read the log. */
  async loaded(): Promise<void> {
    while (!this.ready && !this.stopped && this.lastError === undefined) await this.running;
  }

  status(): RetentionStatus {
    let ended = 0;
    for (const e of this.catalogue.values()) if (e.endedAt !== undefined) ended++;
    const pruned = this.o.log.prunedSummary();
    return {
      policy: this.o.policy,
      ready: this.ready,
      streams: this.catalogue.size,
      ended,
      ...(this.lastPass ? { lastPass: this.lastPass } : {}),
      ...(pruned ? { pruned } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Stops the passes and waits for one that is running; the log stays open. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe();
    await this.running?.catch(() => undefined);
  }
}
