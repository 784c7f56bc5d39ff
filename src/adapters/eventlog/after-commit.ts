/*
 * Commit listeners run in the commit's own tick, before the appenders' promises settle:
 * whatever they do is added to every saga step's latency. The projections must be there
 * (a call reads its own writes), but observers (metrics, trace spans) need not. This
 * wraps an observer so it runs once per turn of the event loop (setImmediate), on all
 * that was committed since, after the appenders have gone on to their next I/O.
 */
export function afterCommit<T>(observe: (items: readonly T[]) => void): (items: readonly T[]) => void {
  let queued: T[] = [];
  let scheduled = false;
  const flush = (): void => {
    const items = queued;
    queued = [];
    scheduled = false;
    observe(items);
  };
  return (items) => {
    for (const item of items) queued.push(item);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

/** The same for an observer of one item at a time (the log's batch statistics). */
export function afterCommitOne<T>(observe: (item: T) => void): (item: T) => void {
  const deferred = afterCommit<T>((items) => {
    for (const item of items) observe(item);
  });
  return (item) => deferred([item]);
}
