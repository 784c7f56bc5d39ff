/** The part of a server-streaming call a writer needs. */
export interface WritableCall<T> {
  write(message: T): boolean;
  on(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}

/**
 * Writes one message, waiting for the client when the transport's buffer is full (or
 * until `signal` aborts): a slow reader holds the writer back instead of the service
 * buffering for it.
 */
export async function writeWithBackpressure<T>(call: WritableCall<T>, message: T, signal: AbortSignal): Promise<void> {
  if (call.write(message) || signal.aborted) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done);
  });
}
