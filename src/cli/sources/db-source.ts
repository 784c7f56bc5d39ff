import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { RELAY_CURSOR } from '../../adapters/bus/outbox-cursor.js';
import { compileFilter } from '../../adapters/ledger-api/event-filter.js';
import { prunedReport } from '../../adapters/eventlog/pruned-report.js';
import { LevelDbEventLog } from '../../adapters/eventlog/leveldb-event-log.js';
import { withBoundedHeapGrowth } from '../../adapters/memory/heap-growth.js';
import { Ledger } from '../../commands/ledger.js';
import {
  MissingRecordError,
  CriLedgerError,
  InvalidArgumentError,
  LedgerLockedError,
  NotFoundError,
} from '../../domain/errors.js';
import { decodeEvent } from '../../domain/events.js';
import {
  sourced,
  type EventFilter,
  type EventSource,
  type LedgerStatus,
  type PrunedQuery,
  type PrunedReport,
  type SourcedEvent,
  type SourcedRecord,
} from './event-source.js';

/** The log is open in the running service; the socket is the way in. */
export class LedgerInUseError extends CriLedgerError {
  constructor(dir: string, options?: { cause?: unknown }) {
    super(
      `the ledger at ${dir} is held by the running cri-ledger service; drop --db to read through its socket`,
      options,
    );
  }
}

/**
 * Reads a stopped service's LevelDB directory. Read-only in practice: it never appends
 * and never writes a cursor, and it refuses a directory that holds no ledger rather than
 * letting the open create one.
 */
export class DbSource implements EventSource {
  readonly description: string;

  private constructor(
    dir: string,
    private readonly log: LevelDbEventLog,
    private readonly node: string,
  ) {
    this.description = `db ${dir}`;
  }

  static async open(dir: string, node: string): Promise<DbSource> {
    try {
      await access(join(dir, 'CURRENT'));
    } catch {
      throw new NotFoundError('ledger directory', dir);
    }
    try {
      return new DbSource(dir, await LevelDbEventLog.open({ dir, node }), node);
    } catch (error) {
      if (error instanceof LedgerLockedError) throw new LedgerInUseError(dir, { cause: error });
      throw error;
    }
  }

  async *readEvents(filter: EventFilter = {}): AsyncIterable<SourcedEvent> {
    const f = compileFilter(filter, 'filter');
    const range = f.toSeq === Infinity ? { fromSeq: f.fromSeq } : { fromSeq: f.fromSeq, toSeq: f.toSeq };
    for await (const record of this.log.readRecords(range)) {
      const e = sourced(record);
      if (f.ended(e.event)) return;
      if (f.matches(e.event)) yield e;
    }
  }

  /**
   * Every stored record. The log's own reader stops at a hole in the seq range; this one
   * steps over it and goes on, so `verify` sees (and reports) everything after it too.
   */
  async *readRecords(): AsyncIterable<SourcedRecord> {
    let from = 1;
    for (;;) {
      try {
        for await (const record of this.log.readRecords({ fromSeq: from })) {
          from = record.seq + 1;
          yield record;
        }
        return;
      } catch (error) {
        if (!(error instanceof MissingRecordError)) throw error;
        from = error.nextSeq;
        if (from > this.log.head()) return;
      }
    }
  }

  follow(): AsyncIterable<SourcedEvent> {
    throw new InvalidArgumentError(
      '--follow',
      'a --db log cannot change while this command holds it; follow the running service (the default) or --nats',
    );
  }

  async status(onProgress?: (done: number, total: number) => void): Promise<LedgerStatus> {
    const head = this.log.head();
    const cursor = await this.log.readCursor(RELAY_CURSOR);
    const ledger = await withBoundedHeapGrowth(() => Ledger.load(this.log, onProgress));
    const p = ledger.projections;
    let headAt: string | undefined;
    let node = this.node;
    for await (const record of this.log.readRecords({ fromSeq: head, toSeq: head })) {
      const event = decodeEvent(record.json, record.seq);
      headAt = event.at;
      node = event.node;
    }
    const out: LedgerStatus = {
      kind: 'ledger',
      source: this.description,
      node,
      head,
      relay: { running: false, cursor, lag: Math.max(0, head - cursor) },
      counts: p.counts(),
      operations: p.operationsWithAge(Date.now()),
    };
    if (headAt) out.headAt = headAt;
    return out;
  }

  async pruned(query: PrunedQuery): Promise<PrunedReport> {
    return prunedReport(this.log, query);
  }

  async size(): Promise<number> {
    return this.log.head();
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}
