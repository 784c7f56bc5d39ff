import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { runSaga, type SagaStep, type StallTimer } from '../../src/commands/saga.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

/*
 * The saga runner's stall watchdog, on a hand-driven clock: a step still running when
 * the caller's deadline passes records one OperationStalled, at once and in order; a
 * fast saga records none; compensation is unchanged.
 */

const c = container('stall-1');
const stream = streams.container(c);
const T0 = Date.parse('2026-11-28T10:00:00.000Z');

/** A clock that moves only when told; timers fire as it passes them. */
function manualTimer(start = T0) {
  let now = start;
  let timers: Array<{ at: number; fn: () => void }> = [];
  const timer: StallTimer & { advance(ms: number): void; jump(ms: number): void; armed(): number } = {
    now: () => now,
    after(ms, fn) {
      const t = { at: now + ms, fn };
      timers.push(t);
      return () => {
        timers = timers.filter((x) => x !== t);
      };
    },
    advance(ms) {
      now += ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= now).sort((a, b) => a.at - b.at)[0];
        if (!due) return;
        timers = timers.filter((t) => t !== due);
        due.fn();
      }
    },
    /** Moves the clock without running timers: an event loop too busy to run them in time. */
    jump(ms) {
      now += ms;
    },
    armed: () => timers.length,
  };
  return timer;
}

/** A step that runs until released, so the test can move the clock while it runs. */
function blocking(name: string, event?: () => NewEvent, options: { pure?: boolean; fail?: boolean } = {}) {
  let release!: () => void;
  let entered!: () => void;
  const running = new Promise<void>((r) => (entered = r));
  const gate = new Promise<void>((r) => (release = r));
  const undone: string[] = [];
  const step: SagaStep<unknown> = {
    name,
    ...(options.pure ? { pure: true } : {}),
    run: async () => {
      entered();
      await gate;
      if (options.fail) throw Object.assign(new Error(`${name} broke`), { code: 'BROKEN' });
      return event ? [event()] : [];
    },
    undo: async () => {
      undone.push(name);
    },
  };
  return { step, release, running, undone };
}

function quick(name: string, event?: () => NewEvent, pure = false): SagaStep<unknown> {
  return { name, ...(pure ? { pure: true } : {}), run: async () => (event ? [event()] : []) };
}

async function begun(): Promise<{ ledger: Ledger; log: MemoryEventLog; appends: string[][] }> {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  await ledger.append(stream, 0, [ev.nameReserved(c)]);
  const appends: string[][] = [];
  const append = ledger.append.bind(ledger);
  ledger.append = async (s, v, events) => {
    appends.push(events.map((e) => e.type));
    return append(s, v, events);
  };
  return { ledger, log, appends };
}

const types = async (log: MemoryEventLog): Promise<string[]> => (await log.readStream(stream)).map((e) => e.type);

/** Waits (in real time, briefly) until the stream holds `n` events. */
async function streamLength(log: MemoryEventLog, n: number): Promise<LedgerEvent[]> {
  for (let i = 0; i < 200; i++) {
    const events = await log.readStream(stream);
    if (events.length >= n) return events;
    await new Promise((r) => setImmediate(r));
  }
  return log.readStream(stream);
}

describe('stall watchdog', () => {
  it('records one OperationStalled, while the step still runs, when a step outlives the deadline', async () => {
    const { ledger, log } = await begun();
    const timer = manualTimer();
    const slow = blocking('Directories');
    const later = blocking('SnapshotPrepared', () => ev.snapshotPrepared(c));
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      deadline: T0 + 100,
      timer,
      steps: [
        quick('SpecGenerated', () => ev.specGenerated(), true),
        slow.step,
        later.step,
        quick('ContainerCreated', () => ev.containerCreated(), true),
      ],
    });
    await slow.running;
    timer.advance(40);
    assert.deepEqual(await types(log), ['NameReserved', 'SpecGenerated'], 'nothing before the deadline');
    timer.advance(80);
    const during = await streamLength(log, 3);
    assert.deepEqual(
      during.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'OperationStalled'],
      'the stall is durable while the step is stuck',
    );
    const stalled = during[2] as LedgerEvent<'OperationStalled'>;
    assert.deepEqual(stalled.data, {
      operation: 'CreateContainer',
      step: 'Directories',
      elapsedMs: 100,
      deadline: new Date(T0 + 100).toISOString(),
    });
    assert.equal(stalled.correlationId, 'req-1');
    slow.release();
    await later.running;
    // Later steps run past the deadline too; the saga's one record already says so.
    timer.advance(60_000);
    later.release();
    assert.equal(await saga, 5);
    assert.deepEqual(await types(log), [
      'NameReserved',
      'SpecGenerated',
      'OperationStalled',
      'SnapshotPrepared',
      'ContainerCreated',
    ]);
    assert.equal(timer.armed(), 0);
  });

  it('records nothing, and adds no append, when every step ends before the deadline', async () => {
    const { ledger, log, appends } = await begun();
    const timer = manualTimer();
    const step = blocking('Directories');
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      deadline: T0 + 1000,
      timer,
      steps: [
        quick('SpecGenerated', () => ev.specGenerated(), true),
        step.step,
        quick('SnapshotPrepared', () => ev.snapshotPrepared(c)),
        quick('ContainerCreated', () => ev.containerCreated(), true),
      ],
    });
    await step.running;
    timer.advance(999);
    step.release();
    await saga;
    assert.equal(timer.armed(), 0, 'the deadline timer is cancelled when the saga ends');
    timer.advance(10_000);
    assert.deepEqual(await types(log), ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated']);
    assert.deepEqual(appends, [['SpecGenerated'], ['SnapshotPrepared', 'ContainerCreated']]);
  });

  it('arms nothing without a deadline, or with an infinite one', async () => {
    for (const deadline of [undefined, Infinity]) {
      const { ledger, log } = await begun();
      const timer = manualTimer();
      const step = blocking('Directories');
      const saga = runSaga({
        operation: 'CreateContainer',
        ledger,
        stream,
        version: 1,
        correlationId: 'req-1',
        ctx: undefined,
        timer,
        ...(deadline === undefined ? {} : { deadline }),
        steps: [step.step, quick('ContainerCreated', () => ev.containerCreated(), true)],
      });
      await step.running;
      assert.equal(timer.armed(), 0);
      timer.advance(1e9);
      step.release();
      await saga;
      assert.deepEqual(await types(log), ['NameReserved', 'ContainerCreated']);
    }
  });

  it("writes what earlier pure steps recorded before the stall, and the stalled step's own events after it", async () => {
    const { ledger, log } = await begun();
    const timer = manualTimer();
    // A pure step that hangs (its failpoint delays, say) while SpecGenerated waits to be written.
    const hung = blocking('Labels', () => ev.containerCreated(), { pure: true });
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      deadline: T0 + 50,
      timer,
      steps: [quick('SpecGenerated', () => ev.specGenerated(), true), hung.step],
    });
    await hung.running;
    timer.advance(50);
    assert.deepEqual(
      (await streamLength(log, 3)).map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'OperationStalled'],
    );
    hung.release();
    await saga;
    const events = await log.readStream(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'OperationStalled', 'ContainerCreated'],
    );
    assert.deepEqual(
      events.map((e) => e.version),
      [1, 2, 3, 4],
    );
  });

  it("never writes the stall before the saga's first event: a deadline already gone is recorded after it", async () => {
    const log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    const timer = manualTimer();
    timer.advance(5_000);
    await runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 0,
      correlationId: 'req-1',
      ctx: undefined,
      deadline: T0 + 1_000,
      timer,
      name: c.name,
      steps: [
        quick('NameReserved', () => ev.nameReserved(c), true),
        quick('SpecGenerated', () => ev.specGenerated(), true),
        quick('SnapshotPrepared', () => ev.snapshotPrepared(c)),
      ],
    });
    const events = await log.readStream(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['NameReserved', 'OperationStalled', 'SpecGenerated', 'SnapshotPrepared'],
    );
    assert.deepEqual((events[1] as LedgerEvent<'OperationStalled'>).data, {
      operation: 'CreateContainer',
      step: 'NameReserved',
      elapsedMs: 0,
      deadline: new Date(T0 + 1_000).toISOString(),
    });
  });

  it('compensates a stalled step that then fails as it would any failure: stall, then Compensated, nothing left', async () => {
    const { ledger, log } = await begun();
    const timer = manualTimer();
    const first = blocking('Directories');
    first.release();
    const broken = blocking('SnapshotPrepared', () => ev.snapshotPrepared(c), { fail: true });
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      deadline: T0 + 10,
      timer,
      steps: [
        quick('SpecGenerated', () => ev.specGenerated(), true),
        first.step,
        broken.step,
        quick('ContainerCreated', () => ev.containerCreated(), true),
      ],
    });
    await broken.running;
    timer.advance(30);
    await streamLength(log, 3);
    broken.release();
    await assert.rejects(saga, /SnapshotPrepared broke/);
    const events = await log.readStream(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'OperationStalled', 'Compensated'],
    );
    const compensated = events[3] as LedgerEvent<'Compensated'>;
    assert.equal(compensated.data.failedStep, 'SnapshotPrepared');
    assert.deepEqual(
      compensated.data.undone.map((u) => u.step),
      ['SnapshotPrepared', 'Directories'],
    );
    assert.deepEqual([...broken.undone, ...first.undone], ['SnapshotPrepared', 'Directories']);
    assert.equal((events[2] as LedgerEvent<'OperationStalled'>).data.step, 'SnapshotPrepared');
    assert.equal(timer.armed(), 0);
  });

  it('blames the step that was running at the deadline even when its timer runs only after that step ended', async () => {
    const { ledger, log } = await begun();
    const timer = manualTimer();
    const slow = blocking('Directories');
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      deadline: T0 + 100,
      timer,
      steps: [
        quick('SpecGenerated', () => ev.specGenerated(), true),
        slow.step,
        quick('SnapshotPrepared', () => ev.snapshotPrepared(c)),
        quick('ContainerCreated', () => ev.containerCreated(), true),
      ],
    });
    await slow.running;
    timer.advance(30);
    timer.jump(200);
    slow.release();
    await saga;
    const events = await log.readStream(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'OperationStalled', 'SnapshotPrepared', 'ContainerCreated'],
    );
    assert.deepEqual((events[2] as LedgerEvent<'OperationStalled'>).data, {
      operation: 'CreateContainer',
      step: 'Directories',
      elapsedMs: 100,
      deadline: new Date(T0 + 100).toISOString(),
    });
    assert.equal(timer.armed(), 0);
  });

  it('keeps the earlier events when the stall record cannot be written, and the saga still completes', async () => {
    const { ledger, log } = await begun();
    const timer = manualTimer();
    const hung = blocking('Labels', () => ev.containerCreated(), { pure: true });
    const saga = runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      deadline: T0 + 50,
      timer,
      steps: [quick('SpecGenerated', () => ev.specGenerated(), true), hung.step],
    });
    await hung.running;
    log.failNextWrite = new Error('disk hiccup');
    timer.advance(50);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(log.failNextWrite, undefined, 'the stall append was tried and failed');
    hung.release();
    await saga;
    assert.deepEqual(await types(log), ['NameReserved', 'SpecGenerated', 'ContainerCreated']);
  });
});
