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

  constructor(private readonly index: ReadModel<NameHold>) {}

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
