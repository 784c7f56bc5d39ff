import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { runSaga, type Failpoints, type SagaStep } from '../../src/commands/saga.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

const c = container('c1');
const stream = streams.container(c);

/** Side effects live in a set, so a test can see what a saga left behind. */
function world() {
  const effects = new Set<string>();
  const step = (name: string, event?: () => NewEvent): SagaStep<unknown> => ({
    name,
    run: async () => {
      effects.add(name);
      return event ? [event()] : [];
    },
    undo: async () => {
      effects.delete(name);
    },
  });
  return { effects, step };
}

async function started(): Promise<{ ledger: Ledger; log: MemoryEventLog }> {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  await ledger.append(stream, 0, [ev.nameReserved(c)]);
  return { ledger, log };
}

const failAt = (point: string): Failpoints => ({
  hit: async (p) => {
    if (p === point) throw Object.assign(new Error(`failpoint ${p}`), { code: 'FAILPOINT' });
  },
});

describe('saga runner', () => {
  it("runs every step in order and records each step's events", async () => {
    const { ledger, log } = await started();
    const { effects, step } = world();
    const version = await runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      steps: [
        step('SpecGenerated', () => ev.specGenerated()),
        step('SnapshotPrepared', () => ev.snapshotPrepared(c)),
        step('ContainerCreated', () => ev.containerCreated()),
      ],
    });
    assert.equal(version, 4);
    assert.deepEqual(
      (await log.readStream(stream)).map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'],
    );
    assert.deepEqual([...effects], ['SpecGenerated', 'SnapshotPrepared', 'ContainerCreated']);
  });

  it('appends the events of pure steps with the next batch, always before the next side effect starts', async () => {
    const { ledger, log } = await started();
    const appends: string[][] = [];
    const append = ledger.append.bind(ledger);
    ledger.append = async (s, v, events) => {
      appends.push(events.map((e) => e.type));
      return append(s, v, events);
    };
    // What each side effect found durable when it started.
    const seenAtEffect: Record<string, string[]> = {};
    const effect = (name: string, event?: () => NewEvent): SagaStep<unknown> => ({
      name,
      run: async () => {
        seenAtEffect[name] = (await log.readStream(stream)).map((e) => e.type);
        return event ? [event()] : [];
      },
    });
    const pure = (name: string, event: () => NewEvent): SagaStep<unknown> => ({
      name,
      pure: true,
      run: async () => [event()],
    });
    await runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      steps: [
        pure('SpecGenerated', () => ev.specGenerated()),
        effect('Directories'),
        effect('SnapshotPrepared', () => ev.snapshotPrepared(c)),
        pure('ContainerCreated', () => ev.containerCreated()),
      ],
    });
    assert.deepEqual(appends, [['SpecGenerated'], ['SnapshotPrepared', 'ContainerCreated']]);
    assert.deepEqual(seenAtEffect, {
      Directories: ['NameReserved', 'SpecGenerated'],
      SnapshotPrepared: ['NameReserved', 'SpecGenerated'],
    });
  });

  it('writes what earlier pure steps recorded before Compensated when a later step fails', async () => {
    const { ledger, log } = await started();
    const pure = (name: string, event: () => NewEvent): SagaStep<unknown> => ({
      name,
      pure: true,
      run: async () => [event()],
    });
    await assert.rejects(
      runSaga({
        operation: 'CreateContainer',
        ledger,
        stream,
        version: 1,
        correlationId: 'req-1',
        ctx: undefined,
        name: c.name,
        steps: [pure('SpecGenerated', () => ev.specGenerated()), pure('ContainerCreated', () => ev.containerCreated())],
        failpoints: failAt('CreateContainer.ContainerCreated'),
      }),
      /failpoint/,
    );
    assert.deepEqual(
      (await log.readStream(stream)).map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'Compensated'],
    );
  });

  it('undoes the failed step and every earlier one newest first, records Compensated, releases the name and rethrows', async () => {
    const { ledger, log } = await started();
    const { effects, step } = world();
    const order: string[] = [];
    const steps = [
      step('SpecGenerated', () => ev.specGenerated()),
      step('SnapshotPrepared', () => ev.snapshotPrepared(c)),
      step('ContainerCreated', () => ev.containerCreated()),
    ].map((s) => ({
      ...s,
      undo: async () => {
        order.push(s.name);
        await s.undo!(undefined);
      },
    }));
    await assert.rejects(
      runSaga({
        operation: 'CreateContainer',
        ledger,
        stream,
        version: 1,
        correlationId: 'req-1',
        ctx: undefined,
        name: c.name,
        steps,
        failpoints: failAt('CreateContainer.SnapshotPrepared'),
      }),
      /failpoint CreateContainer.SnapshotPrepared/,
    );
    const events = await log.readStream(stream);
    assert.deepEqual(
      events.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'Compensated'],
    );
    const compensated = events[2] as LedgerEvent<'Compensated'>;
    assert.equal(compensated.data.failedStep, 'SnapshotPrepared');
    assert.equal(compensated.data.error.code, 'FAILPOINT');
    assert.deepEqual(
      compensated.data.undone.map((u) => [u.step, u.ok]),
      [
        ['SnapshotPrepared', true],
        ['SpecGenerated', true],
      ],
    );
    assert.deepEqual(order, ['SnapshotPrepared', 'SpecGenerated']);
    assert.equal(effects.size, 0, `left behind: ${[...effects].join(', ')}`);
    assert.equal(ledger.projections.containerNames.get(c.name), undefined);
    assert.equal(ledger.projections.operations.size, 0);
  });

  it('records an undo that fails, and goes on undoing the rest', async () => {
    const { ledger, log } = await started();
    const { effects, step } = world();
    const stuck = {
      ...step('SnapshotPrepared', () => ev.snapshotPrepared(c)),
      undo: async () => {
        throw new Error('snapshot busy');
      },
    };
    const failing: SagaStep<unknown> = {
      name: 'ContainerCreated',
      run: async () => {
        throw new Error('containerd said no');
      },
    };
    await assert.rejects(
      runSaga({
        operation: 'CreateContainer',
        ledger,
        stream,
        version: 1,
        correlationId: 'req-1',
        ctx: undefined,
        name: c.name,
        steps: [step('SpecGenerated', () => ev.specGenerated()), stuck, failing],
      }),
      /containerd said no/,
    );
    const compensated = (await log.readStream(stream)).at(-1) as LedgerEvent<'Compensated'>;
    assert.deepEqual(
      compensated.data.undone.map((u) => [u.step, u.ok, u.error]),
      [
        ['SnapshotPrepared', false, 'snapshot busy'],
        ['SpecGenerated', true, undefined],
      ],
    );
    assert.deepEqual([...effects], ['SnapshotPrepared']);
  });

  it('gives up on undos once the compensation deadline has passed, and says so', async () => {
    const { ledger, log } = await started();
    let now = 0;
    const slow: SagaStep<unknown> = {
      name: 'SnapshotPrepared',
      run: async () => [ev.snapshotPrepared(c)],
      undo: async () => {
        now += 50;
      },
    };
    const first: SagaStep<unknown> = {
      name: 'SpecGenerated',
      run: async () => [ev.specGenerated()],
      undo: async () => undefined,
    };
    const failing: SagaStep<unknown> = {
      name: 'ContainerCreated',
      run: async () => {
        throw new Error('boom');
      },
    };
    await assert.rejects(
      runSaga({
        operation: 'CreateContainer',
        ledger,
        stream,
        version: 1,
        correlationId: 'r',
        ctx: undefined,
        steps: [first, slow, failing],
        compensationTimeoutMs: 10,
        clock: () => now,
      }),
    );
    const compensated = (await log.readStream(stream)).at(-1) as LedgerEvent<'Compensated'>;
    assert.deepEqual(
      compensated.data.undone.map((u) => [u.step, u.ok]),
      [
        ['SnapshotPrepared', true],
        ['SpecGenerated', false],
      ],
    );
    assert.match(compensated.data.undone[1]!.error!, /deadline/);
  });
});
