import type { EventLog } from '../../commands/ports.js';

/** The name of the relay's durable cursor in the event log. */
export const RELAY_CURSOR = 'relay';

/**
 * The relay's position: the highest seq such that it and every seq before it are acked
 * by JetStream. Acks arrive out of order when publishes are pipelined; an ack above a gap
 * is remembered until the gap is acked, so the cursor never passes an unacked event and
 * a restart re-sends everything that might be missing (the dedupe window drops the rest).
 *
 * Persisting is coalesced: at most one writeCursor runs at a time, and when it finishes
 * the latest position is written if it moved meanwhile.
 */
export class OutboxCursor {
  private readonly acked = new Set<number>();
  private persisted: number;
  private writing: Promise<void> | undefined;
  private again = false;

  private constructor(
    private readonly log: EventLog,
    private readonly name: string,
    private seq: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.persisted = seq;
  }

  static async load(log: EventLog, onError: (error: unknown) => void, name = RELAY_CURSOR): Promise<OutboxCursor> {
    return new OutboxCursor(log, name, await log.readCursor(name), onError);
  }

  /** The last seq acked with nothing missing before it. */
  get value(): number {
    return this.seq;
  }

  /** Records one ack; returns whether the cursor moved (and a persist was scheduled). */
  ack(seq: number): boolean {
    if (seq <= this.seq) return false;
    this.acked.add(seq);
    const before = this.seq;
    while (this.acked.delete(this.seq + 1)) this.seq++;
    if (this.seq === before) return false;
    this.schedulePersist();
    return true;
  }

  private schedulePersist(): void {
    if (this.writing) {
      this.again = true;
      return;
    }
    this.writing = this.persistLoop();
  }

  private async persistLoop(): Promise<void> {
    do {
      this.again = false;
      const seq = this.seq;
      try {
        await this.log.writeCursor(this.name, seq);
        this.persisted = seq;
      } catch (error) {
        // The cursor stays behind: a restart re-sends more, never less.
        this.onError(error);
      }
    } while (this.again);
    // Cleared in the same tick as the last `again` check, so no ack falls in between.
    this.writing = undefined;
  }

  /** Waits for pending writes and writes the latest position if it is not stored yet. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.persisted !== this.seq) {
      await this.log.writeCursor(this.name, this.seq);
      this.persisted = this.seq;
    }
  }
}
