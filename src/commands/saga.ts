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
}

/** Runs the steps in order; on failure compensates and rethrows the step's own error. Returns the stream version. */
export async function runSaga<Ctx>(o: SagaOptions<Ctx>): Promise<number> {
  const failpoints = o.failpoints ?? NO_FAILPOINTS;
  let version = o.version;
  let pending: NewEvent[] = [];
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    const written = await o.ledger.append(o.stream, version, batch);
    version = written[written.length - 1]!.version;
  };
  for (let k = 0; k < o.steps.length; k++) {
    const step = o.steps[k]!;
    const last = k === o.steps.length - 1;
    try {
      if (!step.pure) await flush();
      const events = (await step.run(o.ctx)) ?? [];
      await failpoints.hit(`${o.operation}.${step.name}`);
      pending.push(...events);
      if (last) await flush();
    } catch (error) {
      // What earlier steps recorded is written before Compensated (it is what happened);
      // the failed step's own events are not.
      await flush().catch(() => undefined);
      await compensate(o, k, error, version).catch(() => undefined);
      throw error;
    }
  }
  return version;
}

async function compensate<Ctx>(o: SagaOptions<Ctx>, failedIndex: number, error: unknown, version: number): Promise<void> {
  const clock = o.clock ?? (() => performance.now());
  const deadline = clock() + (o.compensationTimeoutMs ?? DEFAULT_COMPENSATION_TIMEOUT_MS);
  const undone: Array<{ step: string; ok: boolean; error?: string; durationMs: number }> = [];
  for (let k = failedIndex; k >= 0; k--) {
    const step = o.steps[k]!;
    if (!step.undo) continue;
    const started = clock();
    if (started > deadline) {
      undone.push({ step: step.name, ok: false, error: 'compensation deadline passed before this undo ran', durationMs: 0 });
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
  return !(error instanceof LedgerClosedError || error instanceof ConcurrencyError || error instanceof InvalidArgumentError);
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
