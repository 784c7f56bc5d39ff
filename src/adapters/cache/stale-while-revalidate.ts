/*
 * A value that is costly to read and is asked for on a poll (kubelet's Status every few
 * seconds): answered from the last read while that is younger than `freshMs`; up to
 * `maxStaleMs`, answered from the last read at once while one read in the background
 * brings it up to date (the poll after sees it); older than that, or never read, the
 * caller waits for a read. One read at a time.
 */
export function staleWhileRevalidate<T>(
  read: () => Promise<T>,
  o: { freshMs: number; maxStaleMs: number; now?: () => number },
): () => Promise<T> {
  const now = o.now ?? Date.now;
  let last: { at: number; value: T } | undefined;
  let inflight: Promise<T> | undefined;
  const refresh = (): Promise<T> => {
    inflight ??= read()
      .then((value) => {
        last = { at: now(), value };
        return value;
      })
      .finally(() => (inflight = undefined));
    return inflight;
  };
  return async () => {
    const age = last ? now() - last.at : Infinity;
    if (last && age < o.freshMs) return last.value;
    if (last && age < o.maxStaleMs) {
      refresh().catch(() => undefined);
      return last.value;
    }
    return refresh();
  };
}
