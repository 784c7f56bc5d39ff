import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventLog } from '../../src/commands/ports.js';
import { ConcurrencyError, InvalidArgumentError } from '../../src/domain/errors.js';
import { decodeEvent, encodeEvent, type LedgerEvent, type NewEvent } from '../../src/domain/events.js';
import { container, ev, streams } from './fixtures.js';

export interface LogUnderTest {
  log: EventLog;
  cleanup: () => Promise<void>;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function lifecycle(label: string): { stream: string; events: NewEvent[] } {
  const c = container(label);
  return {
    stream: streams.container(c),
    events: [ev.nameReserved(c), ev.specGenerated(), ev.snapshotPrepared(c), ev.containerCreated()],
  };
}

/** The behaviour every EventLog adapter must have; run against the fake and LevelDB. */
export function describeEventLog(adapter: string, make: () => Promise<LogUnderTest>): void {
  describe(`EventLog contract: ${adapter}`, () => {
    const withLog = (body: (log: EventLog) => Promise<void>) => async () => {
      const { log, cleanup } = await make();
      try {
        await body(log);
      } finally {
        await log.close();
        await cleanup();
      }
    };

    it(
      'stamps seq, version, id, time and node, and reads a stream in version order',
      withLog(async (log) => {
        const a = lifecycle('a');
        const b = lifecycle('b');
        await log.append(a.stream, 0, a.events.slice(0, 2));
        await log.append(b.stream, 0, b.events.slice(0, 1));
        const written = await log.append(a.stream, 2, a.events.slice(2));
        assert.deepEqual(
          written.map((e) => [e.seq, e.version]),
          [
            [4, 3],
            [5, 4],
          ],
        );
        const stream = await log.readStream(a.stream);
        assert.deepEqual(
          stream.map((e) => e.type),
          ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'],
        );
        assert.deepEqual(
          stream.map((e) => e.version),
          [1, 2, 3, 4],
        );
        assert.deepEqual(
          stream.map((e) => e.seq),
          [1, 2, 4, 5],
        );
        assert.equal(new Set(stream.map((e) => e.id)).size, 4);
        assert.ok(stream.every((e) => e.node.length > 0 && !Number.isNaN(Date.parse(e.at))));
        assert.equal(log.head(), 5);
        assert.equal(await log.streamVersion(a.stream), 4);
        assert.equal(await log.streamVersion('container-unknown'), 0);
      }),
    );

    it(
      'rejects a wrong expected version with ConcurrencyError and writes nothing',
      withLog(async (log) => {
        const a = lifecycle('a');
        await log.append(a.stream, 0, a.events.slice(0, 1));
        await assert.rejects(log.append(a.stream, 0, a.events.slice(1, 2)), (error: unknown) => {
          assert.ok(error instanceof ConcurrencyError);
          assert.equal(error.expectedVersion, 0);
          assert.equal(error.actualVersion, 1);
          return true;
        });
        assert.equal(log.head(), 1);
        await log.append(a.stream, 'any', a.events.slice(1, 2));
        assert.equal(await log.streamVersion(a.stream), 2);
      }),
    );

    it(
      'lets exactly one of two racing appends with the same expected version win',
      withLog(async (log) => {
        const a = lifecycle('a');
        const results = await Promise.allSettled([
          log.append(a.stream, 0, a.events.slice(0, 1)),
          log.append(a.stream, 0, a.events.slice(0, 1)),
        ]);
        assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
        const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        assert.ok(rejected.reason instanceof ConcurrencyError);
        assert.equal((await log.readStream(a.stream)).length, 1);
      }),
    );

    it(
      'refuses an event that fails its schema, naming the field, and writes none of the batch',
      withLog(async (log) => {
        const a = lifecycle('a');
        const bad = { ...ev.specGenerated(), data: { ...ev.specGenerated().data, specDigest: 'md5:nope' } };
        await assert.rejects(log.append(a.stream, 0, [a.events[0]!, bad]), (error: unknown) => {
          assert.ok(error instanceof InvalidArgumentError);
          assert.match(error.message, /SpecGenerated\.data: specDigest/);
          return true;
        });
        assert.equal(log.head(), 0);
        assert.deepEqual(await log.readStream(a.stream), []);
      }),
    );

    it(
      'coalesces concurrent appends into fewer batches with gap-free seq',
      withLog(async (log) => {
        let batches = 0;
        log.onCommit(() => batches++);
        const writers = Array.from({ length: 64 }, (_, i) => lifecycle(`w${i}`));
        const results = await Promise.all(writers.map((w) => log.append(w.stream, 0, w.events)));
        assert.equal(log.head(), 64 * 4);
        const seqs = results
          .flat()
          .map((e) => e.seq)
          .sort((x, y) => x - y);
        assert.deepEqual(
          seqs,
          Array.from({ length: 256 }, (_, i) => i + 1),
        );
        assert.ok(batches < 64, `expected group commit, got ${batches} batches for 64 appends`);
        const all = await collect(log.readAll());
        assert.deepEqual(
          all.map((e) => e.seq),
          seqs,
        );
        for (const r of results)
          assert.deepEqual(
            r.map((e) => e.version),
            [1, 2, 3, 4],
          );
      }),
    );

    it(
      'notifies commit listeners before the append resolves',
      withLog(async (log) => {
        const seen: number[] = [];
        log.onCommit((events) => seen.push(...events.map((e) => e.seq)));
        const a = lifecycle('a');
        const written = await log.append(a.stream, 0, a.events);
        assert.deepEqual(
          seen,
          written.map((e) => e.seq),
        );
      }),
    );

    it(
      'filters readAll by seq range, types, streams and time',
      withLog(async (log) => {
        const a = lifecycle('a');
        const b = lifecycle('b');
        await log.append(a.stream, 0, a.events);
        await log.append(b.stream, 0, b.events);
        const seqs = async (o: Parameters<EventLog['readAll']>[0]) => (await collect(log.readAll(o))).map((e) => e.seq);
        assert.deepEqual(await seqs({ fromSeq: 3, toSeq: 5 }), [3, 4, 5]);
        assert.deepEqual(await seqs({ types: ['ContainerCreated'] }), [4, 8]);
        assert.deepEqual(await seqs({ streams: [b.stream] }), [5, 6, 7, 8]);
        assert.deepEqual(await seqs({ untilTime: '2000-01-01T00:00:00Z' }), []);
        assert.deepEqual(
          await seqs({ untilTime: new Date(Date.now() + 60_000).toISOString() }),
          [1, 2, 3, 4, 5, 6, 7, 8],
        );
      }),
    );

    it(
      'stores records that decode and re-encode to the same bytes',
      withLog(async (log) => {
        const a = lifecycle('a');
        await log.append(a.stream, 0, a.events);
        for await (const record of log.readRecords()) {
          assert.equal(encodeEvent(decodeEvent(record.json, record.seq)), record.json);
        }
      }),
    );

    it(
      'follows from a seq through catch-up into live without a gap or a duplicate',
      withLog(async (log) => {
        for (let i = 0; i < 5; i++) {
          const w = lifecycle(`early${i}`);
          await log.append(w.stream, 0, w.events);
        }
        const controller = new AbortController();
        const seen: LedgerEvent[] = [];
        const done = (async () => {
          for await (const e of log.follow(3, { signal: controller.signal })) {
            seen.push(e);
            if (seen.length === 18 + 40) controller.abort();
          }
        })();
        // Appends race with the follower's catch-up and its switch to live.
        for (let i = 0; i < 10; i++) {
          const w = lifecycle(`late${i}`);
          await Promise.all([log.append(w.stream, 0, w.events), new Promise((r) => setImmediate(r))]);
        }
        await done;
        assert.deepEqual(
          seen.map((e) => e.seq),
          Array.from({ length: 58 }, (_, i) => i + 3),
        );
      }),
    );

    it(
      'follows in batches: stored chunks, then each committed batch whole',
      withLog(async (log) => {
        const a = lifecycle('a');
        await log.append(a.stream, 0, a.events);
        const controller = new AbortController();
        const batches: number[][] = [];
        const done = (async () => {
          for await (const batch of log.followBatches(2, { signal: controller.signal })) {
            batches.push(batch.map((e) => e.seq));
            if (batches.flat().length === 3 + 4) controller.abort();
          }
        })();
        await new Promise((r) => setTimeout(r, 5));
        const b = lifecycle('b');
        await log.append(b.stream, 0, b.events);
        await done;
        assert.deepEqual(batches.flat(), [2, 3, 4, 5, 6, 7, 8]);
        assert.deepEqual(batches.at(-1), [5, 6, 7, 8], 'a committed batch arrives as one');
      }),
    );

    it(
      'ends a follow when its signal aborts while waiting',
      withLog(async (log) => {
        const controller = new AbortController();
        const done = (async () => {
          const got: number[] = [];
          for await (const e of log.follow(1, { signal: controller.signal })) got.push(e.seq);
          return got;
        })();
        setTimeout(() => controller.abort(), 20);
        assert.deepEqual(await done, []);
      }),
    );

    it(
      'keeps named cursors',
      withLog(async (log) => {
        assert.equal(await log.readCursor('relay'), 0);
        await log.writeCursor('relay', 42);
        assert.equal(await log.readCursor('relay'), 42);
        assert.equal(await log.readCursor('other'), 0);
      }),
    );
  });
}
