/**
 * The seqs retention removed from the log, as disjoint inclusive ranges, sorted and
 * merged whenever they touch. A reader that finds a hole in the `e!` range steps over
 * it only when one range here covers all of it; any other hole is a lost record.
 *
 * Pruned streams are interleaved with live ones, so the ranges are scattered; their
 * number is bounded by the events still held between them, not by the events removed.
 */
export type SeqRange = readonly [from: number, to: number];

/** What adding seqs changed: the ranges to delete from the store and those to write. */
export interface RangesChange {
  removed: SeqRange[];
  added: SeqRange[];
}

export class SeqRanges {
  private ranges: SeqRange[];

  constructor(ranges: Iterable<SeqRange> = []) {
    this.ranges = [...ranges].sort((a, b) => a[0] - b[0]);
  }

  get size(): number {
    return this.ranges.length;
  }

  /** Every range, in seq order. */
  all(): readonly SeqRange[] {
    return this.ranges;
  }

  /** The highest seq covered (0 when none). */
  last(): number {
    return this.ranges.at(-1)?.[1] ?? 0;
  }

  /** Whether every seq in [from, to] is covered. */
  covers(from: number, to: number): boolean {
    if (from > to) return true;
    const i = this.indexAtOrBefore(from);
    if (i < 0) return false;
    const r = this.ranges[i]!;
    return r[0] <= from && r[1] >= to;
  }

  /** How many covered seqs fall in [from, to]. */
  countIn(from: number, to: number): number {
    let n = 0;
    for (const [a, b] of this.ranges) {
      if (b < from) continue;
      if (a > to) break;
      n += Math.min(b, to) - Math.max(a, from) + 1;
    }
    return n;
  }

  /** The covered ranges clipped to [from, to]. */
  within(from: number, to: number): SeqRange[] {
    const out: SeqRange[] = [];
    for (const [a, b] of this.ranges) {
      if (b < from) continue;
      if (a > to) break;
      out.push([Math.max(a, from), Math.min(b, to)]);
    }
    return out;
  }

  /** Adds seqs (any order) and returns which stored ranges change; the instance is updated. */
  add(seqs: Iterable<number>): RangesChange {
    const sorted = [...new Set(seqs)].sort((a, b) => a - b);
    if (sorted.length === 0) return { removed: [], added: [] };
    const fresh: SeqRange[] = [];
    let run: [number, number] | undefined;
    for (const s of sorted) {
      if (run && run[1] + 1 === s) run[1] = s;
      else {
        if (run) fresh.push(run);
        run = [s, s];
      }
    }
    fresh.push(run!);
    // One sweep over both sorted lists merges every pair that overlaps or touches.
    const merged: Array<[number, number]> = [];
    let i = 0;
    let j = 0;
    while (i < this.ranges.length || j < fresh.length) {
      const next =
        j >= fresh.length || (i < this.ranges.length && this.ranges[i]![0] <= fresh[j]![0])
          ? this.ranges[i++]!
          : fresh[j++]!;
      const tail = merged.at(-1);
      if (tail && next[0] <= tail[1] + 1) tail[1] = Math.max(tail[1], next[1]);
      else merged.push([next[0], next[1]]);
    }
    const key = (r: SeqRange): string => `${r[0]}-${r[1]}`;
    const before = new Set(this.ranges.map(key));
    const after = new Set(merged.map(key));
    const change = {
      removed: this.ranges.filter((r) => !after.has(key(r))),
      added: merged.filter((r) => !before.has(key(r))),
    };
    this.ranges = merged;
    return change;
  }

  private indexAtOrBefore(seq: number): number {
    let lo = 0;
    let hi = this.ranges.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.ranges[mid]![0] <= seq) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }
}
