import type { RawRecord } from '../../src/commands/ports.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { BaseEventLog, type EventLogOptions } from '../../src/adapters/eventlog/base-event-log.js';

/** The EventLog in memory, for unit tests. Same contract as the LevelDB adapter. */
export class MemoryEventLog extends BaseEventLog {
  private readonly records: RawRecord[] = [];
  private readonly streams = new Map<string, RawRecord[]>();
  private readonly cursors = new Map<string, number>();
  /** When set, the next batch write fails with this error (a disk failure stand-in). */
  failNextWrite: Error | undefined;
  /** Milliseconds each batch write takes, to let appends pile up behind it. */
  writeDelayMs = 0;
  /** How many batch writes were made: group commit makes this less than the appends. */
  batchWrites = 0;

  constructor(options: EventLogOptions = { node: 'test-node' }) {
    super(options);
  }

  protected async loadStreamVersion(stream: string): Promise<number> {
    return this.streams.get(stream)?.length ?? 0;
  }

  protected async writeBatch(events: readonly LedgerEvent[], records: readonly string[]): Promise<void> {
    if (this.writeDelayMs > 0) await new Promise((r) => setTimeout(r, this.writeDelayMs));
    if (this.failNextWrite) {
      const error = this.failNextWrite;
      this.failNextWrite = undefined;
      throw error;
    }
    this.batchWrites++;
    events.forEach((e, i) => {
      const record = { seq: e.seq, json: records[i]! };
      this.records.push(record);
      const stream = this.streams.get(e.stream) ?? [];
      stream.push(record);
      this.streams.set(e.stream, stream);
    });
  }

  protected async readStreamRecords(stream: string): Promise<RawRecord[]> {
    return [...(this.streams.get(stream) ?? [])];
  }

  protected async *readRecordChunks(range: { fromSeq: number; toSeq: number }): AsyncIterable<RawRecord[]> {
    yield this.records.slice(range.fromSeq - 1, Math.min(range.toSeq, this.records.length));
  }

  async readCursor(name: string): Promise<number> {
    return this.cursors.get(name) ?? 0;
  }

  async writeCursor(name: string, seq: number): Promise<void> {
    this.cursors.set(name, seq);
  }

  protected async closeStore(): Promise<void> {}
}
