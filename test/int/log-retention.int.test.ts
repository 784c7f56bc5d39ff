import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import { LogRetention } from '../../src/adapters/eventlog/log-retention.js';
import { prunedReport } from '../../src/adapters/eventlog/pruned-report.js';
import { createLogger } from '../../src/adapters/logging/logger.js';
import { LogVerifier, withoutPruned } from '../../src/cli/commands/support/log-verifier.js';
import { liveIn } from '../../src/cli/retention.js';
import { Ledger } from '../../src/commands/ledger.js';
import type { RetentionPolicy } from '../../src/commands/retention-policy.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';

/*
 * Retention against a real LevelDB log: what it removes (ended streams, old or over the
 * size, published), what it never removes (live, open sessions, unpublished), and that
 * readers, a restart and verify all keep working over the holes it leaves.
 */

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-28T10:00:00.000Z');
const logger = createLogger('silent');
const AGE: RetentionPolicy = { maxAgeMs: HOUR, maxBytes: 0, minEndedAgeMs: 60_000, batchEvents: 1_000 };

const pod = sandbox('pod1');
const c1 = container('r1', 'pod1');
const c2 = container('r2', 'pod1');
const c3 = container('r3', 'pod1');
const c4 = container('r4', 'pod1');
const sp = streams.sandbox(pod);
const s1 = streams.container(c1);
const s2 = streams.container(c2);
const s3 = streams.container(c3);
const s4 = streams.container(c4);
const image = 'image-docker.io/library/busybox:latest';
const imageRemoved: NewEvent = {
  type: 'ImageRemoved',
  correlationId: 'req-rmi',
  data: { reference: 'docker.io/library/busybox:latest', imageId: 'sha256:aa' },
};

const removed = (c: typeof c1): NewEvent[] => [
  ev.nameReserved(c!),
  ev.specGenerated(),
  ev.containerCreated(),
  ev.containerStarted(),
  ev.containerExited(),
  ev.containerRemoved(c!),
];

/** A node's history: a live pod, a removed container, one removed with an exec still open, a live one, a compensated one, an image. */
const HISTORY: Array<[string, NewEvent[]]> = [
  [sp, [ev.sandboxReserved(pod), ev.sandboxReady()]],
  [s1, removed(c1)],
  [s2, [ev.nameReserved(c2), ev.execStarted('open-exec'), ev.containerRemoved(c2)]],
  [s3, [ev.nameReserved(c3), ev.containerCreated(), ev.containerStarted()]],
  [image, [imageRemoved]],
  [s4, [ev.nameReserved(c4), ev.compensated(c4.name)]],
  [s3, [ev.containerExited()]],
];

interface Fixture {
  dir: string;
  log: LevelDbEventLog;
  clock: { ms: number };
  reopen(): Promise<LevelDbEventLog>;
}

async function withLog(body: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-retention-'));
  const clock = { ms: T0 };
  const open = () => LevelDbEventLog.open({ dir, node: 'n', now: () => (clock.ms += 10) });
  const f: Fixture = {
    dir,
    clock,
    log: await open(),
    async reopen() {
      await f.log.close();
      f.log = await open();
      return f.log;
    },
  };
  try {
    await body(f);
  } finally {
    await f.log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function write(log: LevelDbEventLog, history: Array<[string, NewEvent[]]>): Promise<LedgerEvent[]> {
  const out: LedgerEvent[] = [];
  for (const [stream, events] of history) out.push(...(await log.append(stream, 'any', events)));
  return out;
}

async function all(log: LevelDbEventLog): Promise<LedgerEvent[]> {
  const out: LedgerEvent[] = [];
  for await (const e of log.readAll()) out.push(e);
  return out;
}

function state(ledger: Ledger): unknown {
  const { position: _position, ...rest } = ledger.projections.snapshot();
  return JSON.parse(JSON.stringify(rest));
}

/** Runs retention passes until one removes nothing; returns the streams it pruned. */
async function prune(
  log: LevelDbEventLog,
  ledger: Ledger,
  o: { policy?: RetentionPolicy; relay?: boolean; nowMs?: number } = {},
): Promise<LogRetention> {
  const retention = LogRetention.start({
    log,
    policy: o.policy ?? AGE,
    relay: o.relay ?? false,
    isLive: liveIn(ledger),
    logger,
    intervalMs: HOUR,
    now: () => o.nowMs ?? T0 + 2 * HOUR,
  });
  await retention.loaded();
  for (let i = 0; i < 50; i++) {
    const before = log.prunedSummary()?.events ?? 0;
    await retention.pass();
    if ((log.prunedSummary()?.events ?? 0) === before) break;
  }
  await retention.stop();
  return retention;
}

describe('log retention (LevelDB)', () => {
  it('removes ended streams older than the max age, and nothing live, open or unended', () =>
    withLog(async ({ log }) => {
      const written = await write(log, HISTORY);
      const ledger = await Ledger.load(log);
      await prune(log, ledger);
      assert.deepEqual(await log.readStream(s1), []);
      assert.deepEqual(await log.readStream(s4), []);
      // The open exec keeps c2; c3 and the pod are live; images never end.
      assert.equal((await log.readStream(s2)).length, 3);
      assert.equal((await log.readStream(s3)).length, 4);
      assert.equal((await log.readStream(sp)).length, 2);
      assert.equal((await log.readStream(image)).length, 1);
      const gone = new Set([s1, s4]);
      assert.deepEqual(
        (await all(log)).map((e) => e.seq),
        written.filter((e) => !gone.has(e.stream)).map((e) => e.seq),
      );
      const t = await log.tombstone(s1);
      assert.equal(t?.complete, true);
      assert.equal(t?.events, 6);
      assert.equal(t?.version, 6);
      assert.equal(t?.name, c1.name);
      assert.equal(log.prunedSummary()?.events, 8);
      assert.equal(log.prunedSummary()?.streams, 2);
    }));

  it('never removes what the relay has not published', () =>
    withLog(async ({ log }) => {
      const written = await write(log, HISTORY);
      const ledger = await Ledger.load(log);
      const c1End = written.filter((e) => e.stream === s1).at(-1)!.seq;
      await log.writeCursor('relay', c1End - 1);
      await prune(log, ledger, { relay: true });
      assert.equal(log.prunedSummary(), undefined);
      await log.writeCursor('relay', c1End);
      await prune(log, ledger, { relay: true });
      assert.deepEqual(await log.readStream(s1), []);
      assert.equal((await log.readStream(s4)).length, 2, 'c4 ended after the cursor');
    }));

  it('rebuilds the same live state after a restart, and keeps seqs and versions going', () =>
    withLog(async (f) => {
      await write(f.log, HISTORY);
      const before = state(await Ledger.load(f.log));
      await prune(f.log, await Ledger.load(f.log));
      const head = f.log.head();
      const log = await f.reopen();
      assert.deepEqual(state(await Ledger.load(log)), before);
      assert.equal(log.head(), head);
      assert.equal(await log.streamVersion(s1), 6, 'a pruned stream keeps its version');
      const [next] = await log.append(s3, 'any', [ev.containerRemoved(c3)]);
      assert.equal(next!.seq, head + 1);
    }));

  it("rebuilds the same state when a pod's undelivered result was claimed by a container since removed", () =>
    withLog(async (f) => {
      const undelivered: NewEvent = {
        type: 'ResultUndelivered',
        correlationId: 'req-pod',
        data: {
          name: pod.name,
          requestDigest: `sha256:${'a'.repeat(64)}`,
          reason: 'deadline',
          gaveUpAt: new Date(T0).toISOString(),
        },
      };
      await write(f.log, [
        [sp, [ev.sandboxReserved(pod), ev.sandboxReady(), undelivered]],
        [s1, removed(c1)],
      ]);
      const before = await Ledger.load(f.log);
      assert.equal(before.projections.undelivered.get(sp), undefined, "c1's reservation claimed the pod");
      await prune(f.log, before);
      assert.equal((await f.log.readStream(s1)).length, 6, 'kept: the claim is in its reservation');
      const log = await f.reopen();
      assert.deepEqual(state(await Ledger.load(log)), state(before));
    }));

  it('keeps the head and time order when the newest events are the ones removed', () =>
    withLog(async (f) => {
      const written = await write(f.log, [
        [s3, [ev.nameReserved(c3), ev.containerCreated()]],
        [s1, removed(c1)],
      ]);
      await prune(f.log, await Ledger.load(f.log));
      assert.deepEqual(await f.log.readStream(s1), []);
      const log = await f.reopen();
      assert.equal(log.head(), written.length);
      f.clock.ms = T0; // the clock went back: `at` must not
      const [next] = await log.append(s3, 'any', [ev.containerStarted()]);
      assert.equal(next!.seq, written.length + 1);
      assert.ok(next!.at >= written.at(-1)!.at);
      const followed: number[] = [];
      const stop = new AbortController();
      for await (const e of log.follow(1, { signal: stop.signal })) {
        followed.push(e.seq);
        if (e.seq === next!.seq) stop.abort();
      }
      assert.deepEqual(followed, [1, 2, next!.seq]);
    }));

  it('prunes a long stream across passes, tail last, and a restart in between sees the same state', () =>
    withLog(async (f) => {
      await write(f.log, HISTORY);
      const before = state(await Ledger.load(f.log));
      const small = { ...AGE, batchEvents: 4 };
      const retention = LogRetention.start({
        log: f.log,
        policy: small,
        relay: false,
        isLive: liveIn(await Ledger.load(f.log)),
        logger,
        intervalMs: HOUR,
        now: () => T0 + 2 * HOUR,
      });
      await retention.loaded();
      await retention.pass();
      await retention.stop();
      assert.deepEqual(
        (await f.log.readStream(s1)).map((e) => e.type),
        ['ContainerExited', 'ContainerRemoved'],
      );
      const t = await f.log.tombstone(s1);
      assert.equal(t?.complete, false);
      assert.equal(t?.version, 4);
      const log = await f.reopen();
      assert.deepEqual(state(await Ledger.load(log)), before);
      await prune(log, await Ledger.load(log), { policy: small });
      assert.deepEqual(await log.readStream(s1), []);
      assert.equal((await log.tombstone(s1))?.complete, true);
    }));

  it('under the size rule, removes the oldest ended streams until the log fits', () =>
    withLog(async ({ log }) => {
      const big = { ...ev.specGenerated(), data: { ...ev.specGenerated().data, spec: { pad: 'x'.repeat(8_000) } } };
      const many = Array.from({ length: 40 }, (_, i) => container(`big-${i}`, 'pod1'));
      for (const c of many)
        await log.append(streams.container(c), 0, [ev.nameReserved(c), big, ev.containerRemoved(c)]);
      await write(log, [[s3, [ev.nameReserved(c3), big, ev.containerCreated()]]]);
      const ledger = await Ledger.load(log);
      const sizeBefore = await log.diskBytes();
      const maxBytes = Math.round(sizeBefore / 2);
      await prune(log, ledger, { policy: { ...AGE, maxAgeMs: 0, maxBytes }, nowMs: Date.now() + HOUR });
      const kept = [];
      for (const c of many) kept.push((await log.readStream(streams.container(c))).length > 0);
      const prunedCount = kept.filter((k) => !k).length;
      assert.ok(prunedCount > 0 && prunedCount < many.length, `pruned ${prunedCount} of ${many.length}`);
      // Oldest first: every pruned stream comes before every kept one.
      assert.deepEqual(kept, [...Array(prunedCount).fill(false), ...Array(many.length - prunedCount).fill(true)]);
      assert.equal((await log.readStream(s3)).length, 3);
      assert.ok((await log.diskBytes()) < sizeBefore, 'the removed records were compacted away');
    }));

  it('keeps only the newest tombstones, and the holes of older ones stay covered', () =>
    withLog(async (f) => {
      await write(f.log, HISTORY);
      await f.log.close();
      f.log = await LevelDbEventLog.open({ dir: f.dir, node: 'n', keepTombstones: 1 });
      await prune(f.log, await Ledger.load(f.log));
      // c1 ended first and went first; c4's tombstone is the one kept.
      assert.equal(await f.log.tombstone(s1), undefined);
      assert.equal((await f.log.tombstone(s4))?.events, 2);
      assert.equal(f.log.prunedSummary()?.streams, 2);
      const log = await f.reopen();
      const report = await prunedReport(log, {});
      assert.equal(report.eventsInRange, 8, 'the seq ranges still say what went');
      assert.ok((await all(log)).length > 0);
    }));

  it('tells readers and verify where the holes are, and verify finds nothing wrong', () =>
    withLog(async ({ log }) => {
      const written = await write(log, HISTORY);
      await prune(log, await Ledger.load(log));
      const report = await prunedReport(log, { streams: [s1, s3] });
      assert.equal(report.pruned, true);
      assert.equal(report.eventsInRange, 8);
      assert.equal(report.firstInRange, written.find((e) => e.stream === s1)!.seq);
      assert.deepEqual(
        report.streamsAsked.map((t) => t.stream),
        [s1],
      );
      const verifier = new LogVerifier();
      for await (const record of log.readRecords()) verifier.add(record);
      const raw = verifier.report().violations;
      assert.ok(
        raw.some((v) => v.check === 'seq'),
        'the holes show as gaps before retention explains them',
      );
      const { violations, explained } = await withoutPruned(raw, (q) => prunedReport(log, q));
      assert.deepEqual(violations, []);
      assert.ok(explained > 0);
    }));
});
