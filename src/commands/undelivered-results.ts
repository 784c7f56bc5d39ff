import { containerStream, sandboxStream } from '../domain/ids.js';
import { dueUnclaimed, type UndeliveredResult } from '../projections/undelivered-results.js';
import type { KeyedLock } from './keyed-lock.js';
import type { Ledger } from './ledger.js';
import type { NameReservations } from './name-reservations.js';
import type { ContainerFiles, ContainerRuntime, PodFiles, SandboxNetwork, TaskRuntime } from './ports.js';
import { containerUndos, runUndos, sandboxUndos } from './undo-by-id.js';

/*
 * Removing a result that reached no caller (docs/recovery.md, "Retries and undelivered
 * results"): a container or sandbox that was created, whose id no caller got
 * (ResultUndelivered), and that nobody has claimed or used since. It goes when a
 * request with another digest comes for its name (`superseded`), or when nobody claims
 * it within the unclaimed-result timeout (`unclaimed`). The removal is what
 * RemoveContainer or RemovePodSandbox would do, keyed by the id, and it is recorded as
 * ContainerRemoved / SandboxRemoved with `discarded` saying why and each undo done; the
 * name is free again. An undo that fails records nothing: the result stays, and the
 * next attempt tries again.
 */

export type DiscardReason = 'superseded' | 'unclaimed';

export interface DiscardCommand {
  id: string;
  reason: DiscardReason;
  /** Why, in plain words (goes into the record). */
  message: string;
  /** The request digest that replaces it (superseded). */
  supersededBy?: string;
  correlationId: string;
  now: string;
}

export interface ContainerDiscardDeps {
  ledger: Ledger;
  runtime: ContainerRuntime;
  files: ContainerFiles;
  /** The lifecycle commands' lock: a StartContainer of the same id waits, then finds it gone. */
  locks?: KeyedLock;
  clock?: () => number;
}

export interface SandboxDiscardDeps {
  ledger: Ledger;
  runtime: ContainerRuntime;
  tasks: TaskRuntime;
  network: SandboxNetwork;
  files: PodFiles;
  clock?: () => number;
}

const monotonic = (): number => performance.now();

/** Removes the undelivered container `o.id`; false when it was claimed, used or removed meanwhile. Throws the first undo's error. */
export async function discardContainerResult(deps: ContainerDiscardDeps, o: DiscardCommand): Promise<boolean> {
  const run = async (): Promise<boolean> => {
    const c = deps.ledger.projections.containers.get(o.id);
    if (!c || c.state !== 'CREATED' || !deps.ledger.projections.undelivered.get(containerStream(o.id))) return false;
    const { results, firstError } = await runUndos(
      containerUndos(deps, c.id, c.snapshot?.snapshotter ?? ''),
      deps.clock ?? monotonic,
    );
    if (firstError !== undefined) throw firstError;
    const discarded = {
      reason: o.reason,
      message: o.message,
      ...(o.supersededBy ? { supersededBy: o.supersededBy } : {}),
      undone: results,
    };
    await deps.ledger.append(containerStream(c.id), c.version, [
      { type: 'ContainerRemoved', correlationId: o.correlationId, data: { name: c.name, removedAt: o.now, discarded } },
    ]);
    return true;
  };
  return deps.locks ? deps.locks.run(o.id, run) : run();
}

/** Removes the undelivered sandbox `o.id`, as RemovePodSandbox would; false when it was claimed, used or removed meanwhile. */
export async function discardSandboxResult(deps: SandboxDiscardDeps, o: DiscardCommand): Promise<boolean> {
  const s = deps.ledger.projections.sandboxes.get(o.id);
  if (!s || s.state !== 'READY' || !deps.ledger.projections.undelivered.get(sandboxStream(o.id))) return false;
  const undos = sandboxUndos(
    { runtime: deps.runtime, tasks: deps.tasks, network: deps.network, podFiles: deps.files },
    s.id,
    s.snapshot?.snapshotter,
    s,
  );
  const { results, firstError } = await runUndos(undos, deps.clock ?? monotonic);
  if (firstError !== undefined) throw firstError;
  const discarded = {
    reason: o.reason,
    message: o.message,
    ...(o.supersededBy ? { supersededBy: o.supersededBy } : {}),
    undone: results,
  };
  await deps.ledger.append(sandboxStream(s.id), s.version, [
    { type: 'SandboxRemoved', correlationId: o.correlationId, data: { name: s.name, removedAt: o.now, discarded } },
  ]);
  return true;
}

/** Why a superseded result was removed, in the record's words. */
export function supersededMessage(r: UndeliveredResult, byDigest: string): string {
  return `a request with another digest (${byDigest}) came for ${r.name}; this result had reached no caller (${r.reason} at ${r.gaveUpAt}), so it was removed and the name went to the new request`;
}

export interface ReapDeps {
  ledger: Ledger;
  containers: ContainerDiscardDeps & { names: NameReservations };
  sandboxes: SandboxDiscardDeps & { names: NameReservations };
  /** How long past the caller's deadline an undelivered result may wait for its claim. */
  unclaimedTimeoutMs: number;
}

export interface ReapOutcome {
  stream: string;
  name: string;
  /** removed: recorded; skipped: claimed or used meanwhile; failed: an undo failed (retried later). */
  result: 'removed' | 'skipped' | 'failed';
  error?: string;
}

/**
 * Removes every undelivered result whose unclaimed time has passed at `nowMs`. Each runs
 * as the work in flight for its name, so a retry arriving meanwhile waits and then sees
 * it gone (and creates afresh) instead of being served an id that is being removed.
 * Returns what happened to each, and when the next one falls due.
 */
export async function reapUnclaimed(
  deps: ReapDeps,
  o: { nowMs: number; correlationId: string },
): Promise<{ outcomes: ReapOutcome[]; nextAtMs: number | undefined }> {
  const { due } = dueUnclaimed(deps.ledger.projections.undelivered.values(), o.nowMs, deps.unclaimedTimeoutMs);
  const outcomes: ReapOutcome[] = [];
  for (const r of due) {
    const side = r.kind === 'container' ? deps.containers : deps.sandboxes;
    if (side.names.runningFor(r.name)) continue; // a request for the name is being handled; look again later
    const message = `no retry with the same request claimed it within ${Math.round(deps.unclaimedTimeoutMs / 1000)}s past ${r.callerDeadline ? `the caller's deadline (${r.callerDeadline})` : `the time its caller gave up (${r.gaveUpAt})`}`;
    const command: DiscardCommand = {
      id: r.id,
      reason: 'unclaimed',
      message,
      correlationId: o.correlationId,
      now: new Date(o.nowMs).toISOString(),
    };
    const work =
      r.kind === 'container'
        ? discardContainerResult(deps.containers, command)
        : discardSandboxResult(deps.sandboxes, command);
    try {
      // Tracked with no digest and no waiting caller: any request for the name waits for it.
      const removed = await side.names
        .track(
          r.name,
          '',
          r.id,
          work.then(() => r.id),
          () => false,
        )
        .then(() => work);
      outcomes.push({ stream: r.stream, name: r.name, result: removed ? 'removed' : 'skipped' });
    } catch (error) {
      outcomes.push({
        stream: r.stream,
        name: r.name,
        result: 'failed',
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
  return {
    outcomes,
    nextAtMs: dueUnclaimed(deps.ledger.projections.undelivered.values(), o.nowMs, deps.unclaimedTimeoutMs).nextAtMs,
  };
}
