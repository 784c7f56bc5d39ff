import { NameConflictError } from '../domain/errors.js';
import type { NameHold } from '../projections/name-index.js';
import type { ReadModel } from '../projections/read-model.js';
import type { Ledger } from './ledger.js';
import type { Caller } from './ports.js';

/** A saga running in this process for a name: a retry with the same request waits for it. */
interface Running {
  requestDigest: string;
  id: string;
  result: Promise<string>;
  /** Whether the request that started it still waits for its answer. */
  callerWaits: () => boolean;
}

/**
 * Names being reserved right now. The name index only sees a name once NameReserved is
 * committed, and two CreateContainer calls with one name can both be between their
 * check and that commit; this set closes the gap. It is checked and written in one
 * synchronous step, and only this process writes the log (the LevelDB lock).
 */
export class NameReservations {
  private readonly pending = new Map<string, string>();
  /** The sagas (and removals of undelivered results) running in this process, by name. */
  private readonly running = new Map<string, Running>();

  constructor(readonly index: ReadModel<NameHold>) {}

  /** What runs for `name` in this process now, if anything. */
  runningFor(name: string): Readonly<Running> | undefined {
    return this.running.get(name);
  }

  /** Runs `work` as the one in flight for `name`, so a retry of the same request can wait for it. */
  track(
    name: string,
    requestDigest: string,
    id: string,
    work: Promise<string>,
    callerWaits: () => boolean = () => true,
  ): Promise<string> {
    const entry = { requestDigest, id, result: work, callerWaits };
    this.running.set(name, entry);
    const forget = (): void => {
      if (this.running.get(name) === entry) this.running.delete(name);
    };
    work.then(forget, forget);
    return work;
  }

  /** Claims `name` for `id`, or throws NameConflictError naming the holder. */
  claim(name: string, id: string): void {
    const holder = this.index.get(name)?.holderId ?? this.pending.get(name);
    if (holder !== undefined && holder !== id) throw new NameConflictError(name, holder);
    this.pending.set(name, id);
  }

  /** Ends the claim: the log now holds the name (NameReserved) or it was never taken. */
  settle(name: string, id: string): void {
    if (this.pending.get(name) === id) this.pending.delete(name);
  }
}

/** What a CreateContainer or RunPodSandbox for a name does, given what holds the name. */
export type RetryDecision =
  /** The same request runs here: wait for its id. */
  | { kind: 'wait' }
  /** Another request runs here whose caller gave up: wait for it to end, then decide again. */
  | { kind: 'waitThenDecide' }
  /** Another request runs here and its caller still waits: ALREADY_EXISTS naming the id it will have. */
  | { kind: 'conflict'; holderId: string }
  /** The same request finished: answer with its id (RetryServed). */
  | { kind: 'serve'; holderId: string }
  /** Another request's result holds the name but reached no caller: remove it, then create. */
  | { kind: 'replace'; holderId: string }
  /** Create (the reservation refuses a name held otherwise, naming the holder). */
  | { kind: 'create' };

export interface RetryFacts {
  requestDigest: string;
  running?: { requestDigest: string; id: string; callerWaits: boolean };
  hold?: { holderId: string; requestDigest: string };
  /** The holder's state: 'CREATING' until its saga ends. */
  holderState?: string;
  /** The holder's result reached no caller, and nobody has used its id since. */
  holderUndelivered: boolean;
}

/**
 * The retry rules of issue 6, as a pure function. Same name and digest: wait for the
 * running saga, or serve the finished one. Another digest: a result never delivered is
 * replaced; one delivered (or still wanted by a caller) is ALREADY_EXISTS.
 */
export function decideRetry(f: RetryFacts): RetryDecision {
  if (f.running) {
    if (f.running.requestDigest === f.requestDigest) return { kind: 'wait' };
    return f.running.callerWaits ? { kind: 'conflict', holderId: f.running.id } : { kind: 'waitThenDecide' };
  }
  // A holder still CREATING but not running here is a saga startup recovery will settle.
  if (!f.hold || f.holderState === undefined || f.holderState === 'CREATING') return { kind: 'create' };
  if (f.hold.requestDigest === f.requestDigest) return { kind: 'serve', holderId: f.hold.holderId };
  return f.holderUndelivered ? { kind: 'replace', holderId: f.hold.holderId } : { kind: 'create' };
}

/** What runOnce reads and writes about the records that hold names. */
export interface ResultPorts {
  /** The record with this id: its state. */
  holder(id: string): { id: string; state: string } | undefined;
  /** Whether the record's result reached no caller and nobody used its id since. */
  undelivered(id: string): boolean;
  /** Records RetryServed: a retry of the same request was answered with this id (and so claimed it). */
  served(id: string): Promise<unknown>;
  /** Records ResultUndelivered: the answer with this id reached nobody. */
  undeliveredTo(id: string, gaveUp: NonNullable<ReturnType<Caller['gaveUp']>>): Promise<unknown>;
  /** Removes the undelivered result with this id, keyed by its id, and records why (it was superseded). */
  replace(id: string): Promise<unknown>;
}

/**
 * The id a request gets: a retry of the same request (same name, same request digest)
 * gets the first one's id, and a result that reached no caller is replaced by a request
 * with another digest. New requests run `saga`, tracked so later retries wait for it.
 * Decisions and tracking happen with no await in between, so concurrent retries see
 * each other.
 *
 * Once the id is ready, `caller` is asked whether anyone still waits for it; if not,
 * ResultUndelivered is recorded before the tracked work ends, so a retry waiting for it
 * reads the log as it will stay. Nothing is written when the caller is there.
 */
export async function runOnce(
  names: NameReservations,
  o: { name: string; requestDigest: string; id: string; caller?: Caller },
  ports: ResultPorts,
  saga: () => Promise<string>,
): Promise<string> {
  const callerWaits = (): boolean => o.caller?.gaveUp() === undefined;
  const answer = async (id: string): Promise<string> => {
    const gaveUp = o.caller?.gaveUp();
    if (gaveUp) await ports.undeliveredTo(id, gaveUp);
    return id;
  };
  for (;;) {
    const running = names.runningFor(o.name);
    const hold = names.index.get(o.name);
    const held = hold && ports.holder(hold.holderId);
    const decision = decideRetry({
      requestDigest: o.requestDigest,
      ...(running
        ? { running: { requestDigest: running.requestDigest, id: running.id, callerWaits: running.callerWaits() } }
        : {}),
      ...(hold ? { hold } : {}),
      ...(held ? { holderState: held.state } : {}),
      holderUndelivered: hold !== undefined && ports.undelivered(hold.holderId),
    });
    switch (decision.kind) {
      case 'wait': {
        const id = await running!.result;
        // The first caller gave up: this retry's answer is the delivery, and claims it.
        if (ports.undelivered(id) && callerWaits()) await ports.served(id);
        return id;
      }
      case 'waitThenDecide':
        await running!.result.catch(() => undefined);
        continue;
      case 'conflict':
        throw new NameConflictError(o.name, decision.holderId);
      case 'serve':
        await ports.served(decision.holderId);
        return answer(decision.holderId);
      case 'replace': {
        const work = ports.replace(decision.holderId).then(saga).then(answer);
        return names.track(o.name, o.requestDigest, o.id, work, callerWaits);
      }
      case 'create':
        return names.track(o.name, o.requestDigest, o.id, saga().then(answer), callerWaits);
    }
  }
}

/** Records that a retry of `command` was answered with the id of the stream's container or sandbox. */
export async function retryServed(
  ledger: Ledger,
  stream: string,
  command: { requestDigest: string; correlationId: string; now: string },
): Promise<void> {
  await ledger.append(stream, 'any', [
    {
      type: 'RetryServed',
      correlationId: command.correlationId,
      data: { requestDigest: command.requestDigest, servedAt: command.now },
    },
  ]);
}

/** Records that the answer with the stream's id reached no caller. */
export async function resultUndelivered(
  ledger: Ledger,
  stream: string,
  o: { name: string; requestDigest: string; correlationId: string; callerDeadline?: string | undefined },
  gaveUp: { at: string; reason: 'cancelled' | 'deadline' | 'recovery' },
): Promise<void> {
  const data = {
    name: o.name,
    requestDigest: o.requestDigest,
    reason: gaveUp.reason,
    gaveUpAt: gaveUp.at,
    ...(o.callerDeadline ? { callerDeadline: o.callerDeadline } : {}),
  };
  await ledger.append(stream, 'any', [{ type: 'ResultUndelivered', correlationId: o.correlationId, data }]);
}
