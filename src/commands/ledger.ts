import type { LedgerEvent, NewEvent } from '../domain/events.js';
import { decodeSnapshot } from '../projections/projection-snapshot.js';
import { Projections } from '../projections/projections.js';
import type { EventLog, ExpectedVersion, SnapshotStore, StoredSnapshot } from './ports.js';

export interface LoadProgress {
  (applied: number, head: number): void;
}

export interface LoadOptions {
  /** Start from the newest valid snapshot in this store, and replay only what follows it. */
  snapshots?: SnapshotStore;
  /** Hears each snapshot that was passed over, and why (the edge logs it as a warning). */
  onSnapshotSkipped?: (snapshot: StoredSnapshot, reason: string) => void;
}

/** Where a load started: a snapshot's seq, or the start of the log. */
export interface LoadedFrom {
  /** The snapshot loaded, if one was. */
  snapshot?: StoredSnapshot & { seq: number };
  /** Events replayed from the log after it (all of them without a snapshot). */
  replayed: number;
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
    readonly loadedFrom: LoadedFrom,
  ) {}

  /**
   * Builds the projections from the newest valid snapshot (if a store is given) and the
   * events after it, or from the whole log, then keeps them current. Batches that
   * commit during the load are held back and applied after it, in seq order.
   * A record that does not decode rejects here, with its seq: startup stops on it. A
   * snapshot never does: a bad one is skipped, so the result is always what a full
   * replay gives.
   */
  static async load(log: EventLog, onProgress?: LoadProgress, options: LoadOptions = {}): Promise<Ledger> {
    let projections = new Projections();
    let held: LedgerEvent[] | undefined = [];
    log.onCommit((events) => {
      if (held) held.push(...events);
      else projections.applyAll(events);
    });
    const head = log.head();
    const restored = options.snapshots ? await newestValidSnapshot(log, options.snapshots, head, options) : undefined;
    if (restored) projections = restored.projections;
    let applied = 0;
    for await (const event of log.readAll({ fromSeq: projections.position() + 1, toSeq: head })) {
      projections.apply(event);
      if (++applied % 10_000 === 0) onProgress?.(applied, head);
    }
    projections.applyAll(held);
    held = undefined;
    onProgress?.(head, head);
    const loadedFrom: LoadedFrom = restored
      ? { snapshot: restored.snapshot, replayed: applied }
      : { replayed: applied };
    return new Ledger(log, projections, loadedFrom);
  }

  append(stream: string, expected: ExpectedVersion, events: readonly NewEvent[]): Promise<LedgerEvent[]> {
    return this.log.append(stream, expected, events);
  }
}

/**
 * The newest snapshot that is whole (checksum), of this build's schema, and of this log
 * (the event at its seq has the id it recorded); undefined when none is.
 */
async function newestValidSnapshot(
  log: EventLog,
  store: SnapshotStore,
  head: number,
  options: LoadOptions,
): Promise<{ snapshot: StoredSnapshot; projections: Projections } | undefined> {
  let candidates: StoredSnapshot[];
  try {
    candidates = await store.list();
  } catch (error) {
    options.onSnapshotSkipped?.({ seq: 0, location: 'the snapshot store' }, `cannot list: ${message(error)}`);
    return undefined;
  }
  for (const snapshot of candidates) {
    const reason = await checkSnapshot(log, store, snapshot, head);
    if (typeof reason !== 'string') return { snapshot, projections: reason };
    options.onSnapshotSkipped?.(snapshot, reason);
  }
  return undefined;
}

/** The snapshot's projections, or why it cannot be used. */
export async function checkSnapshot(
  log: EventLog,
  store: SnapshotStore,
  snapshot: StoredSnapshot,
  head: number,
): Promise<Projections | string> {
  if (snapshot.seq > head) return `it covers seq ${snapshot.seq}, past the log's head ${head}`;
  let decoded: ReturnType<typeof decodeSnapshot>;
  try {
    decoded = decodeSnapshot(await store.read(snapshot));
  } catch (error) {
    return message(error);
  }
  const seq = decoded.header.seq;
  if (seq > head) return `it covers seq ${seq}, past the log's head ${head}`;
  let atSeq: LedgerEvent | undefined;
  try {
    for await (const event of log.readAll({ fromSeq: seq, toSeq: seq })) atSeq = event;
  } catch (error) {
    return `cannot read the log's event at seq ${seq}: ${message(error)}`;
  }
  if (atSeq?.id !== decoded.header.eventId)
    return `it is of another log: event ${decoded.header.eventId} at seq ${seq}, the log has ${atSeq?.id ?? 'none'}`;
  return decoded.projections;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
