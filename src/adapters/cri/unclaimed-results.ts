import type { Logger } from 'pino';
import type { Ledger } from '../../commands/ledger.js';
import { reapUnclaimed, type ReapDeps } from '../../commands/undelivered-results.js';
import { dueUnclaimed } from '../../projections/undelivered-results.js';
import { newEventId } from '../ids/event-id.js';

/** How soon a removal whose undo failed (containerd down, say) is tried again. */
export const DEFAULT_UNCLAIMED_RETRY_MS = 5_000;

/*
 * The timer behind "a result nobody claims is removed": one timeout, armed for the
 * earliest undelivered result's unclaimed time (src/projections/undelivered-results.ts),
 * re-armed after every committed ResultUndelivered and after each sweep. Everything it
 * needs is in the projections, so after a restart `start()` arms it from the log alone.
 */
export class UnclaimedResultTimer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private unsubscribe: (() => void) | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly o: {
      ledger: Ledger;
      reap: Omit<ReapDeps, 'ledger' | 'unclaimedTimeoutMs'>;
      unclaimedTimeoutMs: number;
      logger: Logger;
      retryMs?: number;
      clock?: () => number;
    },
  ) {}

  start(): void {
    this.unsubscribe = this.o.ledger.log.onCommit((events) => {
      if (events.some((e) => e.type === 'ResultUndelivered')) this.arm();
    });
    this.arm();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    await this.sweeping;
  }

  private now(): number {
    return (this.o.clock ?? Date.now)();
  }

  /** Arms the timer for the earliest unclaimed time, or for `retryInMs` when given and sooner. */
  private arm(retryInMs?: number): void {
    if (this.stopped || this.sweeping) return;
    const now = this.now();
    const { due, nextAtMs } = dueUnclaimed(
      this.o.ledger.projections.undelivered.values(),
      now,
      this.o.unclaimedTimeoutMs,
    );
    const at = due.length > 0 ? now + (retryInMs ?? 0) : nextAtMs;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (at === undefined) return;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, at - now));
    // Never the reason the process stays up.
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    this.sweeping = (async () => {
      let retry = false;
      try {
        const { outcomes } = await reapUnclaimed(
          { ...this.o.reap, ledger: this.o.ledger, unclaimedTimeoutMs: this.o.unclaimedTimeoutMs },
          { nowMs: this.now(), correlationId: newEventId() },
        );
        for (const r of outcomes) {
          if (r.result === 'removed')
            this.o.logger.warn({ stream: r.stream, name: r.name }, 'removed a result nobody claimed');
          if (r.result === 'failed')
            this.o.logger.error(
              { stream: r.stream, name: r.name, error: r.error },
              'could not remove a result nobody claimed; will try again',
            );
        }
        retry = outcomes.some((r) => r.result === 'failed');
      } catch (error) {
        this.o.logger.error({ err: error }, 'the unclaimed-result sweep failed; will try again');
        retry = true;
      }
      this.sweeping = undefined;
      // Anything still due (a failed undo, or a name busy with a request) is looked at again soon.
      this.arm(
        retry
          ? (this.o.retryMs ?? DEFAULT_UNCLAIMED_RETRY_MS)
          : Math.min(this.o.retryMs ?? DEFAULT_UNCLAIMED_RETRY_MS, 250),
      );
    })();
  }
}
