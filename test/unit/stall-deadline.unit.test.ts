import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContainer, type CreateContainerDeps } from '../../src/commands/create-container.js';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import { runPodSandbox, type RunPodSandboxDeps } from '../../src/commands/run-pod-sandbox.js';
import type { Failpoints } from '../../src/commands/saga.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { containerStream, sandboxStream } from '../../src/domain/ids.js';
import {
  FakeFiles,
  FakeImages,
  FakeNetwork,
  FakePodFiles,
  FakeRuntime,
  FakeSandboxSpecs,
  FakeSpecs,
  FakeTasks,
} from '../support/fake-runtime.js';
import { digest, ev, hexId, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

/*
 * The caller's deadline reaches the saga through CreateContainer's and RunPodSandbox's
 * commands: a step held (by a failpoint) past it records OperationStalled for that step,
 * and the operation still completes. Real timers, short delays.
 */

// The deadline leaves the steps before the held one ample time, even on a busy machine.
const HOLD_MS = 1_500;
const DEADLINE_MS = 700;
const holdAt = (point: string): Failpoints => ({
  hit: async (p) => {
    if (p === point) await new Promise((r) => setTimeout(r, HOLD_MS));
  },
});
const types = (events: LedgerEvent[]): string[] => events.map((e) => e.type);

describe("the caller's deadline reaches the saga", () => {
  it('CreateContainer: a snapshot step held past the deadline records OperationStalled for it, then the container is created', async () => {
    const log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    const pod = sandbox('stall-pod', 'web_default_uid-s_0');
    await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    const deps = {
      ledger,
      names: new NameReservations(ledger.projections.containerNames),
      images: new FakeImages(),
      runtime: new FakeRuntime(),
      files: new FakeFiles(),
      specs: new FakeSpecs(),
      failpoints: holdAt('CreateContainer.SnapshotPrepared'),
    } satisfies CreateContainerDeps;
    const deadline = Date.now() + DEADLINE_MS;
    const id = await createContainer(deps, {
      containerId: hexId('stall-c1'),
      requestDigest: digest('stall-c1'),
      correlationId: 'req-stall',
      now: new Date().toISOString(),
      deadline,
      request: {
        podSandboxId: pod.id,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' } },
        sandboxConfig: {},
      },
    });
    const events = await log.readStream(containerStream(id));
    assert.deepEqual(types(events), [
      'NameReserved',
      'SpecGenerated',
      'OperationStalled',
      'SnapshotPrepared',
      'ContainerCreated',
    ]);
    const stall = events[2] as LedgerEvent<'OperationStalled'>;
    assert.deepEqual(
      { ...stall.data, elapsedMs: undefined },
      {
        operation: 'CreateContainer',
        step: 'SnapshotPrepared',
        elapsedMs: undefined,
        deadline: new Date(deadline).toISOString(),
      },
    );
    assert.equal(ledger.projections.containers.get(id)?.state, 'CREATED');
  });

  it('RunPodSandbox: a network step held past the deadline records OperationStalled for it, then the sandbox is ready', async () => {
    const log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    const deps = {
      ledger,
      names: new NameReservations(ledger.projections.sandboxNames),
      images: new FakeImages(),
      runtime: new FakeRuntime(),
      tasks: new FakeTasks(),
      network: new FakeNetwork(),
      files: new FakePodFiles(),
      specs: new FakeSandboxSpecs(),
      sandboxImage: 'busybox',
      failpoints: holdAt('RunPodSandbox.NetworkSetUp'),
    } satisfies RunPodSandboxDeps;
    const id = await runPodSandbox(deps, {
      sandboxId: hexId('stall-s1'),
      requestDigest: digest('stall-s1'),
      correlationId: 'req-stall-pod',
      now: new Date().toISOString(),
      deadline: Date.now() + DEADLINE_MS,
      request: {
        config: { metadata: { name: 'web', uid: 'uid-s', namespace: 'default', attempt: 0 } },
        runtimeHandler: '',
      },
    });
    const events = await log.readStream(sandboxStream(id));
    assert.deepEqual(types(events), [
      'SandboxReserved',
      'SpecGenerated',
      'OperationStalled',
      'SnapshotPrepared',
      'SandboxReady',
    ]);
    assert.equal((events[2] as LedgerEvent<'OperationStalled'>).data.step, 'NetworkSetUp');
    assert.equal(ledger.projections.operations.size, 0, 'the saga ended');
  });

  it('records nothing when the same calls end inside their deadline', async () => {
    const log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    const deps = {
      ledger,
      names: new NameReservations(ledger.projections.sandboxNames),
      images: new FakeImages(),
      runtime: new FakeRuntime(),
      tasks: new FakeTasks(),
      network: new FakeNetwork(),
      files: new FakePodFiles(),
      specs: new FakeSandboxSpecs(),
      sandboxImage: 'busybox',
      failpoints: holdAt('RunPodSandbox.NetworkSetUp'),
    } satisfies RunPodSandboxDeps;
    const id = await runPodSandbox(deps, {
      sandboxId: hexId('stall-s2'),
      requestDigest: digest('stall-s2'),
      correlationId: 'req-quick-pod',
      now: new Date().toISOString(),
      deadline: Date.now() + 10_000,
      request: {
        config: { metadata: { name: 'web', uid: 'uid-q', namespace: 'default', attempt: 0 } },
        runtimeHandler: '',
      },
    });
    assert.deepEqual(types(await log.readStream(sandboxStream(id))), [
      'SandboxReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'SandboxReady',
    ]);
  });
});
