/**
 * Fires `onIdle` once nothing has moved for `timeoutMs`. touch() only notes the time, so
 * it costs next to nothing per frame; the one timer re-arms itself for what is left.
 */
export class IdleTimer {
  #last = Date.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly onIdle: () => void,
  ) {
    this.#arm(timeoutMs);
  }

  touch(): void {
    this.#last = Date.now();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const idle = Date.now() - this.#last;
      if (idle >= this.timeoutMs) {
        this.#timer = undefined;
        this.onIdle();
      } else this.#arm(this.timeoutMs - idle);
    }, ms);
    this.#timer.unref();
  }
}
