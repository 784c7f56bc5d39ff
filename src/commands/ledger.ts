import type { LedgerEvent, NewEvent } from '../domain/events.js';
import { Projections } from '../projections/projections.js';
import type { EventLog, ExpectedVersion } from './ports.js';

export interface LoadProgress {
  (applied: number, head: number): void;
}

/**
 * The log plus the projections built from it. Commands append through here; the
 * projections are updated from each committed batch before the append resolves, so a
 * read that follows an append sees it.
 */
export class Ledger {
  private constructor(
    readonly log: EventLog,
    readonly projections: Projections,
  ) {}

  /**
   * Rebuilds the projections from the whole log, then keeps them current. Batches that
   * commit during the rebuild are held back and applied after it, in seq order.
   * A record that does not decode rejects here, with its seq: startup stops on it.
   */
  static async load(log: EventLog, onProgress?: LoadProgress): Promise<Ledger> {
    const projections = new Projections();
    let held: LedgerEvent[] | undefined = [];
    log.onCommit((events) => {
      if (held) held.push(...events);
      else projections.applyAll(events);
    });
    const head = log.head();
    let applied = 0;
    for await (const event of log.readAll({ toSeq: head })) {
      projections.apply(event);
      if (onProgress && ++applied % 10_000 === 0) onProgress(applied, head);
    }
    projections.applyAll(held);
    held = undefined;
    onProgress?.(head, head);
    return new Ledger(log, projections);
  }

  append(stream: string, expected: ExpectedVersion, events: readonly NewEvent[]): Promise<LedgerEvent[]> {
    return this.log.append(stream, expected, events);
  }
}
