/*
 * One copy of a string that many records repeat. Every decoded event carries fresh copies
 * of its strings, and a read model keeps them for as long as the record lives: the image
 * and its digest, the snapshotter and the image's snapshot, the runtime handler, a pod's
 * sandbox id in each of its containers, a namespace. Kept once, a node's 100 pods cost
 * less, and a long log's rebuild (60,000 live containers in the ledger bench) many MB less.
 *
 * Bounded: when the table is full it starts over, so strings of records removed long ago
 * are not held. Records keep whichever copy they got; equal strings stay equal.
 */
export class StringPool {
  readonly #table = new Map<string, string>();

  constructor(private readonly max: number) {}

  of<S extends string | undefined>(text: S): S {
    if (text === undefined) return text;
    const known = this.#table.get(text);
    if (known !== undefined) return known as S;
    if (this.#table.size >= this.max) this.#table.clear();
    this.#table.set(text, text);
    return text;
  }

  get size(): number {
    return this.#table.size;
  }
}

/** The pool the read models share: more than a node's distinct values of these fields. */
export const sharedStrings = new StringPool(16_384);
