import { ConcurrencyError, InvalidArgumentError, LedgerClosedError } from '../domain/errors.js';
import type { NewEvent } from '../domain/events.js';
import type { Ledger } from './ledger.js';

/*
 * The saga runner behind CreateContainer and RunPodSandbox. A saga is a list of steps;
 * each step does one side effect, keyed by the id fixed by the saga's first event, and
 * may record events. When step k fails, the runner undoes steps k..1 newest first (the
 * failed step too: its side effect may have happened before it failed, and every undo
 * is idempotent), then records one `Compensated` with the failed step, the error and
 * each undo's result, and rethrows the step's error.
 *
 * Compensation runs on its own deadline, not the caller's: a cancelled request must
 * still leave nothing behind.
 *
 * When events are written: every event is durable before the next side effect starts,
 * and no sooner. A `pure` step (one that only records a decision, like NameReserved or
 * SpecGenerated) adds its events to the pending batch; a step with a side effect first
 * appends whatever is pending, then runs. So NameReserved and SpecGenerated share one
 * synced write, as do SnapshotPrepared and ContainerCreated, and crash recovery still
 * finds a record of the saga before anything it did exists.
 *
 * The stall watchdog: given the caller's deadline, the runner arms one timer for it.
 * If a step is still running when it passes, one `OperationStalled` names that step
 * and how long it had run; the step itself goes on (its result waits for the caller's
 * retry). It is written at once, after whatever earlier steps recorded and before the
 * stalled step's own events, so an operation stuck in flight shows where it is stuck.
 * Later steps, which start after the deadline, record nothing more: one record per
 * saga. A fast saga never writes it, so the success path gains no synced append.
 */

/** How long all undos of one compensation may take together. */
export const DEFAULT_COMPENSATION_TIMEOUT_MS = 60_000;
/** How often a Compensated the log could not take (a full disk) is tried again. */
export const DEFAULT_COMPENSATED_RETRY_MS = 1_000;

export interface SagaStep<Ctx> {
  /** The step's name, as failpoints and `Compensated.failedStep` name it. */
  name: string;
  /** Does the side effect; returns the events that record it (appended before the next side effect). */
  run(ctx: Ctx): Promise<readonly NewEvent[] | void>;
  /** True when the step has no side effect: its events wait to share the next append. */
  pure?: boolean;
  /** Undoes the side effect; must succeed when it never happened or was undone already. */
  undo?(ctx: Ctx): Promise<void>;
}

/** Injected faults for tests: `<Operation>.<Step>` may error, delay, or end the process. */
export interface Failpoints {
  /** Called after a step's side effect and before its events are recorded. */
  hit(point: string): Promise<void>;
}

export const NO_FAILPOINTS: Failpoints = { hit: async () => undefined };

/** Wall-clock time and timers for the stall watchdog; injectable for tests. */
export interface StallTimer {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms`; returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const SYSTEM_TIMER: StallTimer = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

// setTimeout fires at once for a delay above 2^31-1 ms; a later deadline is re-armed.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Hears how long each step and each whole saga took (metrics); must not throw. */
export interface SagaObserver {
  step(operation: string, step: string, durationMs: number, ok: boolean): void;
  ended(operation: string, durationMs: number, outcome: 'done' | 'compensated'): void;
}

export interface SagaOptions<Ctx> {
  operation: string;
  ledger: Ledger;
  stream: string;
  /** The stream's version after the saga's first event. */
  version: number;
  correlationId: string;
  steps: readonly SagaStep<Ctx>[];
  ctx: Ctx;
  /** The name the saga reserved; `Compensated` releases it. */
  name?: string;
  failpoints?: Failpoints;
  compensationTimeoutMs?: number;
  /** How often a Compensated the log refused is tried again (DEFAULT_COMPENSATED_RETRY_MS). */
  compensatedRetryMs?: number;
  /** Milliseconds since an arbitrary origin; injectable for tests. */
  clock?: () => number;
  /** The caller's deadline, ms since the epoch; absent or Infinity: no stall watchdog. */
  deadline?: number;
  /** The watchdog's clock and timers (default: the system's). */
  timer?: StallTimer;
  observer?: SagaObserver;
}

/** Runs the steps in order; on failure compensates and rethrows the step's own error. Returns the stream version. */
export async function runSaga<Ctx>(o: SagaOptions<Ctx>): Promise<number> {
  const failpoints = o.failpoints ?? NO_FAILPOINTS;
  let version = o.version;
  let pending: NewEvent[] = [];
  // Appends run one after another: the watchdog's may start while a step runs, and each
  // append needs the stream version the one before it left.
  let writes: Promise<void> = Promise.resolve();
  const write = (extra: readonly NewEvent[] = []): Promise<void> => {
    const next = writes.then(async () => {
      // A stall record never begins a stream (the append before it may have failed).
      if (extra.length > 0 && version === 0 && pending.length === 0) return;
      const batch = [...pending, ...extra];
      pending = [];
      if (batch.length === 0) return;
      try {
        const written = await o.ledger.append(o.stream, version, batch);
        version = written[written.length - 1]!.version;
      } catch (error) {
        // When the stall record's append fails, the events it carried stay pending, in
        // order, for the step's own flush; the stall record itself is dropped.
        if (extra.length > 0) pending = [...batch.slice(0, batch.length - extra.length), ...pending];
        throw error;
      }
    });
    writes = next.catch(() => undefined);
    return next;
  };
  let begun = o.version > 0;
  const flush = (): Promise<void> => {
    if (pending.length > 0) begun = true;
    return write();
  };
  const watchdog = stallWatchdog(o, {
    // Written only once the stream has (or is being given) its first event: the saga's
    // begin comes first.
    record: (event) => {
      if (!begun && pending.length === 0) return false;
      write([event]).catch(() => undefined);
      return true;
    },
  });
  const clock = o.clock ?? (() => performance.now());
  const sagaStarted = clock();
  try {
    for (let k = 0; k < o.steps.length; k++) {
      const step = o.steps[k]!;
      const last = k === o.steps.length - 1;
      watchdog.enter(k);
      const stepStarted = clock();
      try {
        if (!step.pure) await flush();
        const events = (await step.run(o.ctx)) ?? [];
        await failpoints.hit(`${o.operation}.${step.name}`);
        pending.push(...events, ...watchdog.deferred());
        if (last) {
          watchdog.stop();
          await flush();
        }
        o.observer?.step(o.operation, step.name, clock() - stepStarted, true);
      } catch (error) {
        o.observer?.step(o.operation, step.name, clock() - stepStarted, false);
        watchdog.stop();
        pending.push(...watchdog.deferred());
        // What earlier steps recorded is written before Compensated (it is what happened);
        // the failed step's own events are not.
        await flush().catch(() => undefined);
        await compensate(o, k, error, version).catch(() => undefined);
        o.observer?.ended(o.operation, clock() - sagaStarted, 'compensated');
        throw error;
      }
    }
  } finally {
    watchdog.stop();
  }
  o.observer?.ended(o.operation, clock() - sagaStarted, 'done');
  return version;
}

interface Watchdog {
  /** Step `k` begins. */
  enter(k: number): void;
  /** A stall record that could not be written yet (the stream had no event): to append after the step's own. */
  deferred(): NewEvent[];
  stop(): void;
}

const NO_WATCHDOG: Watchdog = { enter: () => undefined, deferred: () => [], stop: () => undefined };

/**
 * One timer for the caller's deadline. When it fires, the step running then is the one
 * that stalled; `record` writes the event now, or returns false to have it deferred.
 */
function stallWatchdog<Ctx>(
  o: SagaOptions<Ctx>,
  sink: { record(event: NewEvent<'OperationStalled'>): boolean },
): Watchdog {
  const deadline = o.deadline;
  if (deadline === undefined || !Number.isFinite(deadline)) return NO_WATCHDOG;
  const timer = o.timer ?? SYSTEM_TIMER;
  let current = -1;
  let stepStartedAt = 0;
  let fired = false;
  let stopped = false;
  let held: NewEvent[] = [];
  let cancel: (() => void) | undefined;
  const record = (k: number, startedAt: number): void => {
    fired = true;
    cancel?.();
    const event: NewEvent<'OperationStalled'> = {
      type: 'OperationStalled',
      correlationId: o.correlationId,
      data: {
        operation: o.operation,
        step: o.steps[k]!.name,
        elapsedMs: round(Math.max(0, deadline - startedAt)),
        deadline: new Date(deadline).toISOString(),
      },
    };
    if (!sink.record(event)) held.push(event);
  };
  const fire = (): void => {
    if (fired || stopped || current < 0) return;
    if (timer.now() < deadline) return arm();
    record(current, stepStartedAt);
  };
  const arm = (): void => {
    cancel = timer.after(Math.min(MAX_TIMER_MS, Math.max(0, deadline - timer.now())), fire);
  };
  return {
    enter(k) {
      const now = timer.now();
      if (!fired && !stopped && now >= deadline) {
        // The deadline passed and its timer has not run yet: the step before this one
        // was running then (it began before the deadline, or this would have fired at
        // its start); with none before, the deadline passed before the saga began.
        if (current >= 0 && stepStartedAt < deadline) record(current, stepStartedAt);
        else record(k, now);
      }
      current = k;
      stepStartedAt = now;
      if (fired || stopped || cancel !== undefined) return;
      arm();
    },
    deferred() {
      const out = held;
      held = [];
      return out;
    },
    stop() {
      stopped = true;
      cancel?.();
    },
  };
}

async function compensate<Ctx>(
  o: SagaOptions<Ctx>,
  failedIndex: number,
  error: unknown,
  version: number,
): Promise<void> {
  const clock = o.clock ?? (() => performance.now());
  const deadline = clock() + (o.compensationTimeoutMs ?? DEFAULT_COMPENSATION_TIMEOUT_MS);
  const undone: Array<{ step: string; ok: boolean; error?: string; durationMs: number }> = [];
  for (let k = failedIndex; k >= 0; k--) {
    const step = o.steps[k]!;
    if (!step.undo) continue;
    const started = clock();
    if (started > deadline) {
      undone.push({
        step: step.name,
        ok: false,
        error: 'compensation deadline passed before this undo ran',
        durationMs: 0,
      });
      continue;
    }
    try {
      await withTimeout(step.undo(o.ctx), deadline - started, step.name);
      undone.push({ step: step.name, ok: true, durationMs: round(clock() - started) });
    } catch (undoError) {
      undone.push({ step: step.name, ok: false, error: messageOf(undoError), durationMs: round(clock() - started) });
    }
  }
  const failedStep = o.steps[failedIndex]!.name;
  const code = (error as { code?: unknown } | undefined)?.code;
  const compensated: NewEvent[] = [
    {
      type: 'Compensated',
      correlationId: o.correlationId,
      data: {
        operation: o.operation,
        failedStep,
        error: { message: messageOf(error), ...(typeof code === 'string' ? { code } : {}) },
        undone,
        ...(o.name === undefined ? {} : { name: o.name }),
      },
    },
  ];
  // If this append fails too, the caller still gets the step's error. When the log
  // closed under us, the stream stays in flight and startup recovery compensates it.
  // When the log could not write (a full disk), the saga's earlier events hold its name
  // until Compensated joins them: keep trying in the background, so the name is free
  // once space is back, not only after a restart. A stream that was never written
  // (version 0) holds nothing and gets no Compensated later.
  try {
    await o.ledger.append(o.stream, version, compensated);
  } catch (appendError) {
    if (version > 0 && retryable(appendError)) retryCompensated(o, version, compensated);
    throw appendError;
  }
}

function retryable(error: unknown): boolean {
  return !(
    error instanceof LedgerClosedError ||
    error instanceof ConcurrencyError ||
    error instanceof InvalidArgumentError
  );
}

function retryCompensated<Ctx>(o: SagaOptions<Ctx>, version: number, events: NewEvent[]): void {
  const timer = setTimeout(() => {
    o.ledger.append(o.stream, version, events).catch((error: unknown) => {
      if (retryable(error)) retryCompensated(o, version, events);
    });
  }, o.compensatedRetryMs ?? DEFAULT_COMPENSATED_RETRY_MS);
  // A retry never keeps the process alive; a restart's recovery finishes the saga.
  (timer as { unref?: () => void }).unref?.();
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`undo of ${what} timed out after ${Math.round(ms)}ms`)), Math.max(0, ms));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
