import { NameConflictError } from '../domain/errors.js';
import type { NameHold } from '../projections/name-index.js';
import type { ReadModel } from '../projections/read-model.js';
import type { Ledger } from './ledger.js';

/**
 * Names being reserved right now. The name index only sees a name once NameReserved is
 * committed, and two CreateContainer calls with one name can both be between their
 * check and that commit; this set closes the gap. It is checked and written in one
 * synchronous step, and only this process writes the log (the LevelDB lock).
 */
export class NameReservations {
  private readonly pending = new Map<string, string>();
  /** The sagas running in this process, by name: a retry with the same request waits for one. */
  private readonly running = new Map<string, { requestDigest: string; id: string; result: Promise<string> }>();

  constructor(private readonly index: ReadModel<NameHold>) {}

  /**
   * What a retry of the same request (same name, same request digest) gets instead of
   * ALREADY_EXISTS: the running saga's result to wait for, or the id that holds the
   * name since that request finished. Undefined when this is not such a retry.
   */
  retryOf(name: string, requestDigest: string): { wait: Promise<string> } | { servedBy: string } | undefined {
    const running = this.running.get(name);
    // Another request for the name runs here: ALREADY_EXISTS, naming the id it will have.
    if (running && running.requestDigest !== requestDigest) throw new NameConflictError(name, running.id);
    if (running) return { wait: running.result };
    const hold = this.index.get(name);
    return hold && hold.requestDigest === requestDigest ? { servedBy: hold.holderId } : undefined;
  }

  /** Runs `saga` as the one in flight for `name`, so a retry of the same request can wait for it. */
  track(name: string, requestDigest: string, id: string, saga: Promise<string>): Promise<string> {
    const entry = { requestDigest, id, result: saga };
    this.running.set(name, entry);
    const forget = (): void => {
      if (this.running.get(name) === entry) this.running.delete(name);
    };
    saga.then(forget, forget);
    return saga;
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

/**
 * The id a retry of the same request gets, or undefined when this is a new request
 * (and it must run `saga`, tracked so later retries wait for it). `holder` reads the
 * record that holds the name; `served` records RetryServed on it. Checked and tracked
 * with no await in between, so concurrent retries see the first one.
 */
export function runOnce(
  names: NameReservations,
  o: { name: string; requestDigest: string; id: string },
  holder: (id: string) => { id: string; state: string } | undefined,
  served: (holderId: string) => Promise<unknown>,
  saga: () => Promise<string>,
): Promise<string> {
  const retry = names.retryOf(o.name, o.requestDigest);
  if (retry && 'wait' in retry) return retry.wait;
  const held = retry && holder(retry.servedBy);
  // A holder still CREATING but not running here is a saga startup recovery will undo.
  if (held && held.state !== 'CREATING') return served(held.id).then(() => held.id);
  return names.track(o.name, o.requestDigest, o.id, saga());
}

/** Records that a retry of `command` was answered with the id of the stream's container or sandbox. */
export async function retryServed(ledger: Ledger, stream: string, command: { requestDigest: string; correlationId: string; now: string }): Promise<void> {
  await ledger.append(stream, 'any', [{ type: 'RetryServed', correlationId: command.correlationId, data: { requestDigest: command.requestDigest, servedAt: command.now } }]);
}
