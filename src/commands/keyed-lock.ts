/**
 * One critical section per key (a container id): the lifecycle commands and the exit
 * recorder each read a container's state, act, and append at the version they read.
 * Run under the container's lock they never race one another into a ConcurrencyError,
 * and an exit recorded by StopContainer is seen by the exit recorder right after.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    // The tail settles after `result` either way and never rejects. The last one out
    // forgets the key, so the map holds only keys in use.
    const forget = (): void => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
    const tail = result.then(forget, forget);
    this.tails.set(key, tail);
    return result;
  }
}
