import type { LedgerEvent } from '../domain/events.js';

/**
 * A projection folds events into documents, one document per key (a container id, a
 * name, a stream). `evolve` is pure: it never mutates `doc` and never does I/O, it
 * returns the next document, or undefined to delete it. Applying the same event twice
 * in a row returns the same document (each projection checks the stream version or
 * the owning id), so a redelivered event changes nothing.
 */
export interface Projection<Doc> {
  readonly name: string;
  /** The keys of the documents an event touches (often none). */
  keysOf(event: LedgerEvent): readonly string[];
  evolve(doc: Doc | undefined, event: LedgerEvent): Doc | undefined;
  /**
   * Optional: the document with the strings many documents repeat taken from the shared
   * pool (string-pool.ts), for documents that come from a snapshot rather than from
   * evolve (which takes them from the pool as it sets them). An equal document.
   */
  share?(doc: Doc): Doc;
}

/**
 * Holds a projection's documents. Documents are immutable values; only this map of
 * them changes. It also remembers the last seq applied, so replaying a log prefix it
 * has already seen (a restarted follower) is a no-op as well.
 */
export class ReadModel<Doc> {
  private readonly docs = new Map<string, Doc>();
  private lastSeq = 0;

  constructor(readonly projection: Projection<Doc>) {}

  apply(event: LedgerEvent): void {
    if (event.seq <= this.lastSeq) return;
    for (const key of this.projection.keysOf(event)) {
      const next = this.projection.evolve(this.docs.get(key), event);
      if (next === undefined) this.docs.delete(key);
      else this.docs.set(key, next);
    }
    this.lastSeq = event.seq;
  }

  /** The seq of the last event applied. */
  position(): number {
    return this.lastSeq;
  }

  get(key: string): Doc | undefined {
    return this.docs.get(key);
  }

  keys(): IterableIterator<string> {
    return this.docs.keys();
  }

  values(): IterableIterator<Doc> {
    return this.docs.values();
  }

  get size(): number {
    return this.docs.size;
  }

  /**
   * An independent read model at the same position: it can then be moved on by other
   * events without touching this one. Documents are immutable, so only the map is copied.
   */
  copy(): ReadModel<Doc> {
    const twin = new ReadModel(this.projection);
    for (const [key, doc] of this.docs) twin.docs.set(key, doc);
    twin.lastSeq = this.lastSeq;
    return twin;
  }

  /**
   * The documents as they stand, for a snapshot: a copy of the map's entries, so later
   * events cannot change what was captured (the documents themselves never change).
   */
  entries(): Array<[string, Doc]> {
    return [...this.docs.entries()];
  }

  /**
   * Fills an empty read model with documents a snapshot captured at `position`: events
   * at or below it are then skipped, the ones after it apply as usual.
   */
  restore(entries: Iterable<readonly [string, Doc]>, position: number): void {
    if (this.docs.size > 0 || this.lastSeq > 0) throw new Error(`read model ${this.projection.name} is not empty`);
    const { projection } = this;
    for (const [key, doc] of entries) this.docs.set(key, projection.share ? projection.share(doc) : doc);
    this.lastSeq = position;
  }

  /** A plain, key-sorted copy of every document, for comparisons and `replay --json`. */
  snapshot(): Record<string, Doc> {
    return Object.fromEntries([...this.docs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}
