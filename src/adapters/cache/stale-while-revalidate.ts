/*
 * A value that is costly to read and is asked for on a poll (kubelet's Status every few
 * seconds, ImageStatus before each container): answered from the last read while that
 * is younger than `freshMs`; up to `maxStaleMs`, answered from the last read at once
 * while one read in the background brings it up to date (the call after sees it); older
 * than that, never read, or invalidated, the caller waits for a read. One read at a time.
 */
export interface Revalidating<T> {
  (): Promise<T>;
  /** Forgets the value (this process changed what it reflects): the next call waits for a fresh read. */
  invalidate(): void;
}

export function staleWhileRevalidate<T>(
  read: () => Promise<T>,
  o: { freshMs: number; maxStaleMs: number; now?: () => number },
): Revalidating<T> {
  const now = o.now ?? Date.now;
  let last: { at: number; value: T } | undefined;
  let inflight: Promise<T> | undefined;
  /** Bumped by invalidate(): a read begun before it neither stores its value nor is shared after. */
  let generation = 0;
  const refresh = (): Promise<T> => {
    if (inflight) return inflight;
    const mine = generation;
    const reading = read()
      .then((value) => {
        if (mine === generation) last = { at: now(), value };
        return value;
      })
      .finally(() => {
        if (inflight === reading) inflight = undefined;
      });
    inflight = reading;
    return reading;
  };
  const get = async (): Promise<T> => {
    const age = last ? now() - last.at : Infinity;
    if (last && age < o.freshMs) return last.value;
    if (last && age < o.maxStaleMs) {
      refresh().catch(() => undefined);
      return last.value;
    }
    return refresh();
  };
  return Object.assign(get, {
    invalidate() {
      generation += 1;
      last = undefined;
      inflight = undefined;
    },
  });
}
