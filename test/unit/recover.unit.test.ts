import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { RECOVERY_STEP, recoverInFlight, type RecoveryDeps } from '../../src/commands/recover.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { FakeFiles, FakeNetwork, FakePodFiles, FakeRuntime, FakeTasks, TEST_IMAGE } from '../support/fake-runtime.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

async function world() {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  const deps: RecoveryDeps = {
    ledger,
    runtime: new FakeRuntime(),
    tasks: new FakeTasks(),
    containerFiles: new FakeFiles(),
    podFiles: new FakePodFiles(),
    network: new FakeNetwork(),
    snapshotter: 'overlayfs',
    clock: () => 0,
    now: () => '2026-11-28T10:05:00.000Z',
  };
  return { log, ledger, deps, runtime: deps.runtime as FakeRuntime, files: deps.containerFiles as FakeFiles };
}

describe('startup recovery', () => {
  it('compensates a CreateContainer left in flight, keyed by its id, and frees the name', async () => {
    const w = await world();
    const pod = sandbox('pod1');
    const c = container('c1');
    await w.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    await w.ledger.append(streams.container(c), 0, [ev.nameReserved(c), ev.specGenerated()]);
    // What the crashed process had done: the record, the snapshot and the dirs.
    await w.runtime.createContainer({ id: c.id, spec: {}, image: TEST_IMAGE, snapshot: { snapshotter: 'overlayfs', key: c.id, parent: TEST_IMAGE.chainId }, runtime: 'r', labels: {}, extension: {} });
    await w.runtime.prepareSnapshot(c.id, TEST_IMAGE);
    await w.files.createDirs(c.id);
    const inFlight = [...w.ledger.projections.operations.values()];
    assert.equal(inFlight.length, 1);
    const [outcome] = await recoverInFlight(w.deps, inFlight);
    assert.equal(outcome?.compensated, true);
    assert.deepEqual({ containers: w.runtime.containers.size, snapshots: w.runtime.snapshots.size, dirs: w.files.dirs.size }, { containers: 0, snapshots: 0, dirs: 0 });
    const last = (await w.log.readStream(streams.container(c))).at(-1) as LedgerEvent<'Compensated'>;
    assert.equal(last.type, 'Compensated');
    assert.equal(last.data.failedStep, RECOVERY_STEP);
    assert.match(last.data.error.message, /at SpecGenerated/);
    assert.equal(w.ledger.projections.containerNames.get(c.name), undefined);
    assert.equal(w.ledger.projections.operations.size, 0);
  });

  it('leaves a saga in flight, recording nothing, when an undo fails; a later run finishes it', async () => {
    const w = await world();
    const c = container('c2');
    await w.ledger.append(streams.container(c), 0, [ev.nameReserved(c)]);
    w.runtime.failOn('deleteContainer');
    const inFlight = [...w.ledger.projections.operations.values()];
    const [first] = await recoverInFlight(w.deps, inFlight);
    assert.equal(first?.compensated, false);
    assert.equal(first?.undone.find((u) => !u.ok)?.step, 'ContainerRecord');
    assert.equal(w.ledger.projections.operations.size, 1);
    const [second] = await recoverInFlight(w.deps, inFlight);
    assert.equal(second?.compensated, true);
    assert.equal(w.ledger.projections.operations.size, 0);
  });

  it('compensates a RunPodSandbox left in flight: pause task, snapshot, record, network, pod files', async () => {
    const w = await world();
    const pod = sandbox('pod2');
    await w.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod)]);
    const [outcome] = await recoverInFlight(w.deps, [...w.ledger.projections.operations.values()]);
    assert.equal(outcome?.compensated, true);
    assert.deepEqual(outcome?.undone.map((u) => u.step), ['SandboxReady', 'SnapshotPrepared', 'PauseCreated', 'NetworkSetUp', 'NetworkNamespace', 'PodFiles']);
    assert.equal(w.ledger.projections.sandboxNames.get(pod.name), undefined);
  });
});
