import { NameConflictError } from '../domain/errors.js';
import type { NameHold } from '../projections/name-index.js';
import type { ReadModel } from '../projections/read-model.js';

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
