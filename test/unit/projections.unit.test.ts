import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { AmbiguousIdError } from '../../src/domain/errors.js';
import { containerStore } from '../../src/projections/container-store.js';
import { containerNameIndex } from '../../src/projections/name-index.js';
import { openSessions } from '../../src/projections/open-sessions.js';
import { operationsInFlight } from '../../src/projections/operations.js';
import { Projections } from '../../src/projections/projections.js';
import type { Projection } from '../../src/projections/read-model.js';
import { sandboxNameIndex } from '../../src/projections/sandbox-name-index.js';
import { sandboxStore } from '../../src/projections/sandbox-store.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';
import { given, history } from '../support/history.js';
import { MemoryEventLog } from '../support/memory-event-log.js';
import { generateScenario } from '../support/scenario.js';

const c1 = container('c1');
const c2 = container('c2', 'pod1', c1.name);
const pod = sandbox('pod1');
const s1 = streams.container(c1);
const s2 = streams.container(c2);

describe('container store', () => {
  it('shows a reserved container as CREATING until ContainerCreated', () => {
    const p = given([s1, ev.nameReserved(c1)], [s1, ev.specGenerated()], [s1, ev.snapshotPrepared(c1)]);
    const record = p.containers.get(c1.id)!;
    assert.equal(record.state, 'CREATING');
    assert.equal(record.snapshot?.key, c1.id);
    assert.equal(record.runtimeHandler, 'runc');
  });

  it('carries a container through created, running and exited with its exit code', () => {
    const p = given(
      [s1, ev.nameReserved(c1)],
      [s1, ev.specGenerated()],
      [s1, ev.snapshotPrepared(c1)],
      [s1, ev.containerCreated()],
      [s1, ev.containerStarted()],
      [s1, ev.containerExited(137)],
    );
    const record = p.containers.get(c1.id)!;
    assert.equal(record.state, 'EXITED');
    assert.equal(record.exitCode, 137);
    assert.equal(record.reason, 'Error');
    assert.equal(record.pid, 4242);
    assert.deepEqual(record.labels, { app: 'x' });
    assert.equal(record.version, 6);
  });

  it('marks a container reconciliation found missing in containerd, leaving its stream version alone', () => {
    const reconciled = {
      type: 'RuntimeReconciled' as const,
      correlationId: 'reconcile',
      data: {
        orphansRemoved: [],
        missing: [
          { kind: 'container', id: c1.id, state: 'CREATED' },
          { kind: 'sandbox', id: pod.id, state: 'READY' },
        ],
      },
    };
    const ps = streams.sandbox(pod);
    const p = given(
      [ps, ev.sandboxReserved(pod)],
      [ps, ev.sandboxReady()],
      [s1, ev.nameReserved(c1)],
      [s1, ev.containerCreated()],
      [s2, ev.nameReserved(c2)],
      [s2, ev.containerCreated()],
      ['node-n1', reconciled],
    );
    const record = p.containers.get(c1.id)!;
    assert.match(record.missingInRuntimeSince ?? '', /^\d{4}-/);
    assert.equal(record.version, 2);
    assert.equal(p.containers.get(c2.id)!.missingInRuntimeSince, undefined);
    assert.equal(p.sandboxes.get(pod.id)!.missingInRuntimeSince, record.missingInRuntimeSince);
    assert.equal(p.sandboxes.get(pod.id)!.version, 2);
  });

  it('forgets a container that was compensated or removed', () => {
    const p = given(
      [s1, ev.nameReserved(c1)],
      [s1, ev.compensated(c1.name)],
      [s2, ev.nameReserved(c2)],
      [s2, ev.containerCreated()],
      [s2, ev.containerRemoved(c2)],
    );
    assert.equal(p.containers.size, 0);
  });
});

describe('name index', () => {
  it('holds a name from NameReserved for that container', () => {
    const p = given([s1, ev.nameReserved(c1)]);
    assert.equal(p.containerNames.get(c1.name)?.holderId, c1.id);
    assert.equal(p.findContainer(c1.name)?.id, c1.id);
  });

  it('releases the name when the saga is compensated, so a new container can take it', () => {
    const p = given([s1, ev.nameReserved(c1)], [s1, ev.compensated(c1.name)], [s2, ev.nameReserved(c2)]);
    assert.equal(p.containerNames.get(c1.name)?.holderId, c2.id);
  });

  it('ignores a release from a container that no longer holds the name', () => {
    const p = given(
      [s1, ev.nameReserved(c1)],
      [s1, ev.containerRemoved(c1)],
      [s2, ev.nameReserved(c2)],
      [s1, ev.containerRemoved(c1)],
    );
    assert.equal(p.containerNames.get(c1.name)?.holderId, c2.id);
  });

  it('keeps sandbox names apart from container names', () => {
    const p = given([streams.sandbox(pod), ev.sandboxReserved(pod)], [streams.sandbox(pod), ev.sandboxReady()]);
    assert.equal(p.sandboxNames.get(pod.name)?.holderId, pod.id);
    assert.equal(p.containerNames.size, 0);
    assert.equal(p.sandboxes.get(pod.id)?.state, 'READY');
    assert.equal(p.sandboxes.get(pod.id)?.ip, '10.88.0.2');
  });
});

describe('sandbox store', () => {
  it('moves a sandbox from READY to NOTREADY on stop and forgets it on removal', () => {
    const ps = streams.sandbox(pod);
    const stopped = given([ps, ev.sandboxReserved(pod)], [ps, ev.sandboxReady()], [ps, ev.sandboxStopped()]);
    assert.equal(stopped.sandboxes.get(pod.id)?.state, 'NOTREADY');
    const removed = given(
      [ps, ev.sandboxReserved(pod)],
      [ps, ev.sandboxReady()],
      [ps, ev.sandboxStopped()],
      [ps, ev.sandboxRemoved(pod)],
    );
    assert.equal(removed.sandboxes.size, 0);
    assert.equal(removed.sandboxNames.size, 0);
  });
});

describe('operations in flight', () => {
  it('lists a saga from its first event until its terminal one, with its last step', () => {
    const p = given(
      [s1, ev.nameReserved(c1)],
      [s1, ev.specGenerated()],
      [s2, ev.nameReserved(c2)],
      [s2, ev.containerCreated()],
    );
    assert.deepEqual([...p.operations.keys()], [s1]);
    const op = p.operations.get(s1)!;
    assert.equal(op.operation, 'CreateContainer');
    assert.equal(op.lastStep, 'SpecGenerated');
    assert.equal(op.name, c1.name);
  });

  it('counts a made host path as a step of CreateContainer; the container stays CREATING', () => {
    const made: NewEvent<'HostPathCreated'> = {
      type: 'HostPathCreated',
      correlationId: 'req-1',
      data: { field: 'config.mounts[0].host_path', path: '/data/new', created: ['/data', '/data/new'], mode: '0755' },
    };
    const p = given([s1, ev.nameReserved(c1)], [s1, ev.specGenerated()], [s1, made]);
    assert.equal(p.operations.get(s1)?.lastStep, 'HostPathCreated');
    const record = p.containers.get(c1.id)!;
    assert.equal(record.state, 'CREATING');
    assert.equal(record.lastEvent.type, 'HostPathCreated');
    assert.equal(p.containerNames.get(c1.name)?.holderId, c1.id, 'the name stays held');
  });
});

describe('lookups', () => {
  it('finds a container by a unique id prefix and refuses an ambiguous one', () => {
    const p = given([s1, ev.nameReserved(c1)], [s2, ev.nameReserved({ ...c2, name: 'other_pod1_default_uid-pod1_0' })]);
    assert.equal(p.findContainer(c1.id.slice(0, 12))?.id, c1.id);
    assert.equal(p.findContainer('ffffffffffff'), undefined);
    const common = c1.id.split('').findIndex((ch, i) => ch !== c2.id[i]);
    if (common > 0) assert.throws(() => p.findContainer(c1.id.slice(0, common)), AmbiguousIdError);
  });
});

const PROJECTIONS: Array<Projection<unknown>> = [
  containerStore,
  containerNameIndex,
  sandboxStore,
  sandboxNameIndex,
  operationsInFlight,
  openSessions,
] as Array<Projection<unknown>>;

/** Folds events straight through `evolve`, with no seq guard, to test evolve itself. */
function fold(projection: Projection<unknown>, events: LedgerEvent[], times: number): Map<string, unknown> {
  const docs = new Map<string, unknown>();
  for (const event of events) {
    for (let t = 0; t < times; t++) {
      for (const key of projection.keysOf(event)) {
        const next = projection.evolve(docs.get(key), event);
        if (next === undefined) docs.delete(key);
        else docs.set(key, next);
      }
    }
  }
  return docs;
}

async function scenarioEvents(
  pods: number,
  seed: number,
): Promise<{ log: MemoryEventLog; ledger: Ledger; events: LedgerEvent[] }> {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  for (const a of generateScenario({ pods, seed, sessions: true, openSessions: true }))
    await ledger.append(a.stream, a.expected, a.events);
  const events: LedgerEvent[] = [];
  for await (const e of log.readAll()) events.push(e);
  return { log, ledger, events };
}

describe('projection properties', () => {
  it('rebuilding from the log gives the same state as updating after each append', async () => {
    for (const seed of [1, 2, 3]) {
      const { log, ledger, events } = await scenarioEvents(60, seed);
      assert.ok(events.length > 500, `scenario too small: ${events.length}`);
      const rebuilt = await Ledger.load(log);
      assert.deepEqual(rebuilt.projections.snapshot(), ledger.projections.snapshot());
      assert.ok(
        ledger.projections.containers.size > 0 && ledger.projections.operations.size > 0,
        'scenario must leave live containers and sagas in flight',
      );
    }
  });

  it('applying every event twice in a row changes nothing', async () => {
    const { events } = await scenarioEvents(60, 7);
    for (const projection of PROJECTIONS) {
      assert.deepEqual(fold(projection, events, 2), fold(projection, events, 1), projection.name);
      assert.ok(fold(projection, events, 1).size > 0, `${projection.name} should hold documents`);
    }
  });

  it('never mutates the document it is given', async () => {
    const { events } = await scenarioEvents(20, 9);
    for (const projection of PROJECTIONS) {
      const docs = new Map<string, unknown>();
      for (const event of events) {
        for (const key of projection.keysOf(event)) {
          const before = docs.get(key);
          const frozen = before === undefined ? undefined : JSON.stringify(before);
          const next = projection.evolve(before, event);
          if (before !== undefined)
            assert.equal(JSON.stringify(before), frozen, `${projection.name} mutated ${key} on ${event.type}`);
          if (next === undefined) docs.delete(key);
          else docs.set(key, next);
        }
      }
    }
  });

  it('skips events at or below the position it has already applied', () => {
    const events = history([s1, ev.nameReserved(c1)], [s1, ev.compensated(c1.name)], [s2, ev.nameReserved(c2)]);
    const p = new Projections();
    p.applyAll(events);
    p.applyAll(events);
    assert.equal(p.containerNames.get(c1.name)?.holderId, c2.id);
    assert.equal(p.position(), 3);
  });

  it('sees an append in the projections as soon as the append resolves', async () => {
    const log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    await ledger.append(s1, 0, [ev.nameReserved(c1)]);
    assert.equal(ledger.projections.containerNames.get(c1.name)?.holderId, c1.id);
  });
});
