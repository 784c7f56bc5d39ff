import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeqRanges } from '../../src/adapters/eventlog/seq-ranges.js';
import { planRetention, type RetentionInput, type RetentionPolicy } from '../../src/commands/retention-policy.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { evolveStreamEntry, type StreamEntry } from '../../src/projections/stream-catalogue.js';
import { container, ev, sandbox, streams, time } from '../support/fixtures.js';
import { history } from '../support/history.js';

const c1 = container('c1');
const c2 = container('c2');
const pod = sandbox('pod1');
const s1 = streams.container(c1);
const s2 = streams.container(c2);
const sp = streams.sandbox(pod);
const HOUR = 3_600_000;

/** The catalogue after `events` (each counted as 100 bytes). */
function catalogue(events: readonly LedgerEvent[]): Map<string, StreamEntry> {
  const out = new Map<string, StreamEntry>();
  for (const e of events) {
    if (!e.stream.startsWith('container-') && !e.stream.startsWith('sandbox-')) continue;
    out.set(e.stream, evolveStreamEntry(out.get(e.stream), e, 100));
  }
  return out;
}

const removedContainer = (c: typeof c1, s: string): Array<[string, NewEvent]> => [
  [s, ev.nameReserved(c)],
  [s, ev.specGenerated()],
  [s, ev.containerCreated()],
  [s, ev.containerStarted()],
  [s, ev.containerExited()],
  [s, ev.containerRemoved(c)],
];

const POLICY: RetentionPolicy = { maxAgeMs: HOUR, maxBytes: 0, minEndedAgeMs: 60_000, batchEvents: 1000 };

function plan(events: readonly LedgerEvent[], over: Partial<RetentionInput> = {}) {
  return planRetention({
    policy: POLICY,
    // history() stamps event i at time(i): two hours after the start, they are all old.
    nowMs: Date.parse(time(2 * 3600)),
    streams: catalogue(events).values(),
    logBytes: 0,
    publishedSeq: undefined,
    isLive: () => false,
    ...over,
  });
}

describe('stream catalogue', () => {
  it('marks a container stream ended at ContainerRemoved and counts its events', () => {
    const entry = catalogue(history(...removedContainer(c1, s1))).get(s1)!;
    assert.equal(entry.endedBy, 'ContainerRemoved');
    assert.equal(entry.events, 6);
    assert.equal(entry.bytes, 600);
    assert.equal(entry.name, c1.name);
    assert.equal(entry.firstSeq, 1);
    assert.equal(entry.lastSeq, 6);
  });

  it('keeps a session open past its container removal until its end event', () => {
    const events = history([s1, ev.nameReserved(c1)], [s1, ev.execStarted('sess-1')], [s1, ev.containerRemoved(c1)]);
    assert.deepEqual(catalogue(events).get(s1)!.openSessions, ['sess-1']);
    const ended = history(
      [s1, ev.nameReserved(c1)],
      [s1, ev.execStarted('sess-1')],
      [s1, ev.containerRemoved(c1)],
      [s1, ev.execEnded('sess-1')],
    );
    assert.deepEqual(catalogue(ended).get(s1)!.openSessions, []);
  });

  it('leaves image streams out: they never end', () => {
    const removed: NewEvent = {
      type: 'ImageRemoved',
      correlationId: 'req-rmi',
      data: { reference: 'docker.io/library/busybox:latest', imageId: 'sha256:aa' },
    };
    const events = history(['image-docker.io/library/busybox:latest', removed]);
    assert.equal(catalogue(events).size, 0);
  });
});

describe('retention policy', () => {
  it('prunes a removed container whose last event is older than the max age', () => {
    const p = plan(history(...removedContainer(c1, s1)));
    assert.deepEqual(p.picks, [{ stream: s1, events: 6, reason: 'age' }]);
  });

  it('never picks a container that has not ended, however old', () => {
    const p = plan(history([s1, ev.nameReserved(c1)], [s1, ev.containerCreated()], [s1, ev.containerStarted()]));
    assert.deepEqual(p.picks, []);
    assert.equal(p.eligible, 0);
  });

  it('never picks a stream the live read models still hold', () => {
    const p = plan(history(...removedContainer(c1, s1)), { isLive: (s) => s === s1 });
    assert.deepEqual(p.picks, []);
    assert.equal(p.heldBack.live, 1);
  });

  it('never picks a stream with a session still open', () => {
    const p = plan(history([s1, ev.nameReserved(c1)], [s1, ev.execStarted('x')], [s1, ev.containerRemoved(c1)]));
    assert.deepEqual(p.picks, []);
    assert.equal(p.heldBack.openSessions, 1);
  });

  it('never picks an event the relay has not published', () => {
    const events = history(...removedContainer(c1, s1), ...removedContainer(c2, s2));
    const p = plan(events, { publishedSeq: 8 });
    assert.deepEqual(
      p.picks.map((x) => x.stream),
      [s1],
    );
    assert.equal(p.heldBack.unpublished, 1);
    assert.deepEqual(plan(events, { publishedSeq: 0 }).picks, []);
  });

  it('never picks a stream that ended after the oldest snapshot a start may load', () => {
    const events = history(...removedContainer(c1, s1), ...removedContainer(c2, s2));
    // c1 ends at seq 6: a snapshot at 6 is anchored to its last event, so it stays.
    assert.deepEqual(plan(events, { snapshotSeq: 6 }).picks, []);
    const p = plan(events, { snapshotSeq: 7 });
    assert.deepEqual(
      p.picks.map((x) => x.stream),
      [s1],
    );
    assert.equal(p.heldBack.unsnapshotted, 1);
  });

  it('waits for the minimum time after the end, even under the size rule', () => {
    const events = history(...removedContainer(c1, s1));
    const justAfter = Date.parse(events.at(-1)!.at) + 1000;
    const p = plan(events, {
      nowMs: justAfter,
      policy: { ...POLICY, maxAgeMs: 0, maxBytes: 1 },
      logBytes: 10_000,
    });
    assert.deepEqual(p.picks, []);
    assert.equal(p.heldBack.recent, 1);
  });

  it('keeps young streams under the age rule', () => {
    const events = history(...removedContainer(c1, s1));
    const p = plan(events, { nowMs: Date.parse(events.at(-1)!.at) + HOUR / 2 });
    assert.deepEqual(p.picks, []);
    assert.equal(p.eligible, 1);
  });

  it('under the size rule, prunes the oldest ended streams until their size covers the excess', () => {
    const events = history(
      ...removedContainer(c1, s1),
      ...removedContainer(c2, s2),
      [sp, ev.sandboxReserved(pod)],
      [sp, ev.sandboxReady()],
      [sp, ev.sandboxStopped()],
      [sp, ev.sandboxRemoved(pod)],
    );
    const nowMs = Date.parse(events.at(-1)!.at) + 2 * 60_000;
    const policy = { ...POLICY, maxAgeMs: 0, maxBytes: 10_000 };
    // 1,500 bytes over: c1's 6 events are 600 bytes stored twice (1,200), c2's cover the rest.
    const p = plan(events, { nowMs, policy, logBytes: 11_500 });
    assert.deepEqual(
      p.picks.map((x) => [x.stream, x.reason]),
      [
        [s1, 'size'],
        [s2, 'size'],
      ],
    );
    assert.deepEqual(plan(events, { nowMs, policy, logBytes: 9_000 }).picks, []);
  });

  it('bounds a pass to the batch size, cutting the last stream short', () => {
    const events = history(...removedContainer(c1, s1), ...removedContainer(c2, s2));
    const p = plan(events, { policy: { ...POLICY, batchEvents: 8 } });
    assert.deepEqual(p.picks, [
      { stream: s1, events: 6, reason: 'age' },
      { stream: s2, events: 2, reason: 'age' },
    ]);
  });

  it('does nothing with both rules off, though it still counts what is eligible', () => {
    const p = plan(history(...removedContainer(c1, s1)), { policy: { ...POLICY, maxAgeMs: 0 } });
    assert.deepEqual(p.picks, []);
    assert.equal(p.eligible, 1);
  });

  it("keeps a container while its sandbox's undelivered result may be claimed by its reservation", () => {
    const undelivered: NewEvent = {
      type: 'ResultUndelivered',
      correlationId: 'req-pod',
      data: { name: pod.name, requestDigest: `sha256:${'a'.repeat(64)}`, reason: 'deadline', gaveUpAt: time(1) },
    };
    const events = history(
      [sp, ev.sandboxReserved(pod)],
      [sp, ev.sandboxReady()],
      [sp, undelivered],
      ...removedContainer(c1, s1),
    );
    const p = plan(events);
    assert.deepEqual(p.picks, []);
    assert.equal(p.heldBack.claims, 1);
    // Without the sandbox's stream in the log (removed, or never an undelivered result), it may go.
    const withoutPod = plan(events.filter((e) => e.stream !== sp));
    assert.deepEqual(
      withoutPod.picks.map((x) => x.stream),
      [s1],
    );
  });

  it('prunes a compensated creation: it ended without a container', () => {
    const p = plan(history([s1, ev.nameReserved(c1)], [s1, ev.compensated(c1.name)]));
    assert.deepEqual(p.picks, [{ stream: s1, events: 2, reason: 'age' }]);
  });
});

describe('pruned seq ranges', () => {
  it('merges touching ranges and says which stored ranges change', () => {
    const r = new SeqRanges([[1, 3]]);
    const change = r.add([4, 5, 9]);
    assert.deepEqual(r.all(), [
      [1, 5],
      [9, 9],
    ]);
    assert.deepEqual(change.removed, [[1, 3]]);
    assert.deepEqual(change.added, [
      [1, 5],
      [9, 9],
    ]);
    const bridge = r.add([6, 7, 8]);
    assert.deepEqual(r.all(), [[1, 9]]);
    assert.deepEqual(bridge.removed, [
      [1, 5],
      [9, 9],
    ]);
  });

  it('covers a hole only when every seq of it was removed', () => {
    const r = new SeqRanges([
      [2, 4],
      [7, 7],
    ]);
    assert.equal(r.covers(2, 4), true);
    assert.equal(r.covers(3, 3), true);
    assert.equal(r.covers(4, 5), false);
    assert.equal(r.covers(1, 2), false);
    assert.equal(r.covers(7, 7), true);
    assert.equal(r.countIn(1, 10), 4);
    assert.deepEqual(r.within(3, 7), [
      [3, 4],
      [7, 7],
    ]);
  });
});
