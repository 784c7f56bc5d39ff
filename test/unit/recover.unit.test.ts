import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { createContainer, type CreateContainerDeps } from '../../src/commands/create-container.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import {
  decideCreateContainerRecovery,
  RECOVERY_STEP,
  recoverInFlight,
  type RecoveryDeps,
} from '../../src/commands/recover.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import {
  FakeFiles,
  FakeImages,
  FakeNetwork,
  FakePodFiles,
  FakeRuntime,
  FakeSpecs,
  FakeTasks,
  TEST_IMAGE,
} from '../support/fake-runtime.js';
import { container, digest, ev, hexId, sandbox, streams } from '../support/fixtures.js';
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
    await w.runtime.createContainer({
      id: c.id,
      spec: {},
      image: TEST_IMAGE,
      snapshot: { snapshotter: 'overlayfs', key: c.id, parent: TEST_IMAGE.chainId },
      runtime: 'r',
      labels: {},
      extension: {},
    });
    await w.runtime.prepareSnapshot(c.id, TEST_IMAGE);
    await w.files.createDirs(c.id);
    const inFlight = [...w.ledger.projections.operations.values()];
    assert.equal(inFlight.length, 1);
    const [outcome] = await recoverInFlight(w.deps, inFlight);
    assert.equal(outcome?.compensated, true);
    assert.deepEqual(
      { containers: w.runtime.containers.size, snapshots: w.runtime.snapshots.size, dirs: w.files.dirs.size },
      { containers: 0, snapshots: 0, dirs: 0 },
    );
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
    assert.deepEqual(
      outcome?.undone.map((u) => u.step),
      ['SandboxReady', 'SnapshotPrepared', 'PauseCreated', 'NetworkSetUp', 'NetworkNamespace', 'PodFiles'],
    );
    assert.equal(w.ledger.projections.sandboxNames.get(pod.name), undefined);
  });
});

describe('startup recovery: roll forward', () => {
  const pod = sandbox('pod-rf', 'rf_default_uid-rf_0');
  const NEVER = new Promise<void>(() => undefined);

  /** A CreateContainer that "crashed" after `step`: its failpoint never returns, and a new ledger is loaded from the log. */
  async function crashedAfter(step: string) {
    const w = await world();
    await w.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    const deps: CreateContainerDeps = {
      ledger: w.ledger,
      names: new NameReservations(w.ledger.projections.containerNames),
      images: new FakeImages(),
      runtime: w.runtime,
      files: w.files,
      specs: new FakeSpecs(),
      failpoints: {
        hit: async (point) => {
          if (point !== `CreateContainer.${step}`) return;
          reached();
          await NEVER;
        },
      },
    };
    let reached!: () => void;
    const crashed = new Promise<void>((r) => (reached = r));
    const id = hexId(`rf-${step}-${Math.random()}`);
    const created = createContainer(deps, {
      containerId: id,
      requestDigest: digest('rf-request'),
      correlationId: 'req-rf',
      now: '2026-11-28T10:00:00.000Z',
      request: {
        podSandboxId: pod.id,
        config: {
          metadata: { name: 'app', attempt: 0 },
          image: { image: 'busybox' },
          labels: { tier: 'web' },
          annotations: { a: 'b' },
        },
        sandboxConfig: {},
      },
    });
    // The failpoint holds the saga forever, as a crash would. One that fails or ends
    // before it gets there fails the test with its own error instead of hanging it.
    await Promise.race([
      crashed,
      created.then(() => {
        throw new Error(`CreateContainer ended before the crash at ${step}`);
      }),
    ]);
    const ledger = await Ledger.load(w.log);
    return { ...w, id, ledger, deps: { ...w.deps, ledger } };
  }

  for (const step of ['SnapshotPrepared', 'ContainerCreated']) {
    it(`given a crash at ${step} with the record and snapshot in containerd, rolls forward and marks it undelivered`, async () => {
      const w = await crashedAfter(step);
      const [outcome] = await recoverInFlight(w.deps, [...w.ledger.projections.operations.values()]);
      assert.equal(outcome?.decision, 'rollForward');
      assert.equal(outcome?.rolledForward, true);
      const events = await w.log.readStream(streams.container({ id: w.id, sandboxId: pod.id, name: '' }));
      assert.deepEqual(
        events.map((e) => e.type),
        [
          'NameReserved',
          'SpecGenerated',
          'RecoveryDecided',
          'SnapshotPrepared',
          'ContainerCreated',
          'ResultUndelivered',
        ],
      );
      const decided = events[2] as LedgerEvent<'RecoveryDecided'>;
      assert.deepEqual(decided.data.evidence, {
        containerRecord: true,
        specDigestMatches: true,
        snapshot: true,
        createdData: true,
      });
      const record = w.ledger.projections.containers.get(w.id);
      assert.equal(record?.state, 'CREATED');
      assert.deepEqual(record?.labels, { tier: 'web' });
      assert.deepEqual(record?.annotations, { a: 'b' });
      assert.equal(w.ledger.projections.undelivered.get(`container-${w.id}`)?.reason, 'recovery');
      assert.equal(w.ledger.projections.operations.size, 0);
      assert.ok(w.runtime.containers.has(w.id) && w.runtime.snapshots.has(w.id) && w.files.dirs.has(w.id));
    });
  }

  it('given only the containerd record (no snapshot), compensates and says why', async () => {
    const w = await crashedAfter('ContainerRecord');
    const [outcome] = await recoverInFlight(w.deps, [...w.ledger.projections.operations.values()]);
    assert.equal(outcome?.decision, 'compensate');
    assert.equal(outcome?.compensated, true);
    const events = await w.log.readStream(`container-${w.id}`);
    assert.deepEqual(events.map((e) => e.type).slice(-2), ['RecoveryDecided', 'Compensated']);
    assert.match((events.at(-2) as LedgerEvent<'RecoveryDecided'>).data.reason, /snapshot does not exist/);
    assert.deepEqual(
      { containers: w.runtime.containers.size, snapshots: w.runtime.snapshots.size, dirs: w.files.dirs.size },
      { containers: 0, snapshots: 0, dirs: 0 },
    );
  });

  it('given a containerd record whose spec differs from the recorded one, compensates', async () => {
    const w = await crashedAfter('ContainerCreated');
    const held = w.runtime.containers.get(w.id)!;
    w.runtime.containers.set(w.id, { ...held, spec: { ...held.spec, hostname: 'tampered' } });
    const [outcome] = await recoverInFlight(w.deps, [...w.ledger.projections.operations.values()]);
    assert.equal(outcome?.decision, 'compensate');
    const decided = (await w.log.readStream(`container-${w.id}`)).at(-2) as LedgerEvent<'RecoveryDecided'>;
    assert.equal(decided.data.evidence?.specDigestMatches, false);
    assert.match(decided.data.reason, /another spec/);
    assert.equal(w.runtime.containers.size, 0);
  });

  it('records that a RunPodSandbox left in flight is always compensated', async () => {
    const w = await world();
    const p = sandbox('pod-rf2');
    await w.ledger.append(streams.sandbox(p), 0, [ev.sandboxReserved(p)]);
    const [outcome] = await recoverInFlight(w.deps, [...w.ledger.projections.operations.values()]);
    assert.equal(outcome?.decision, 'compensate');
    const decided = (await w.log.readStream(streams.sandbox(p))).at(-2) as LedgerEvent<'RecoveryDecided'>;
    assert.equal(decided.type, 'RecoveryDecided');
    assert.match(decided.data.reason, /always compensated/);
  });

  it('decides from the evidence alone (pure)', () => {
    const stored = {
      specDigest: 'sha256:a',
      snapshotKey: 'c',
      extension: {
        containerCreated: {
          createdAt: '2026-11-28T10:00:00.000Z',
          imageRef: 'i',
          logPath: '',
          labels: {},
          annotations: {},
        },
      },
    };
    assert.equal(
      decideCreateContainerRecovery({ id: 'c', specDigest: 'sha256:a' }, stored, true).decision,
      'rollForward',
    );
    assert.equal(
      decideCreateContainerRecovery({ id: 'c', specDigest: 'sha256:b' }, stored, true).decision,
      'compensate',
    );
    assert.equal(
      decideCreateContainerRecovery({ id: 'c', specDigest: 'sha256:a' }, stored, false).decision,
      'compensate',
    );
    assert.equal(
      decideCreateContainerRecovery({ id: 'c', specDigest: 'sha256:a' }, undefined, true).decision,
      'compensate',
    );
    assert.equal(
      decideCreateContainerRecovery({ id: 'c', specDigest: 'sha256:a' }, { ...stored, extension: {} }, true).decision,
      'compensate',
    );
  });
});
