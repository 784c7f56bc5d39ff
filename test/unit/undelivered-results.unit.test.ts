import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createContainer,
  type CreateContainerCommand,
  type CreateContainerDeps,
} from '../../src/commands/create-container.js';
import { KeyedLock } from '../../src/commands/keyed-lock.js';
import { Ledger } from '../../src/commands/ledger.js';
import { decideRetry, NameReservations, type RetryFacts } from '../../src/commands/name-reservations.js';
import type { Caller } from '../../src/commands/ports.js';
import {
  runPodSandbox,
  type RunPodSandboxCommand,
  type RunPodSandboxDeps,
} from '../../src/commands/run-pod-sandbox.js';
import { reapUnclaimed } from '../../src/commands/undelivered-results.js';
import { NameConflictError } from '../../src/domain/errors.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { containerStream, sandboxStream } from '../../src/domain/ids.js';
import { dueUnclaimed } from '../../src/projections/undelivered-results.js';
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
 * Idempotent retries (issue 6): a result whose id reached no caller is recorded as
 * such, claimed by a retry with the same request digest, replaced by a request with
 * another digest, and removed when nobody claims it in time; all of it read from the
 * log, so it holds after a restart.
 */

const pod = sandbox('pod1', 'web_default_uid-1_0');
const NAME = 'app_web_default_uid-1_0';
const T0 = Date.parse('2026-11-28T10:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const TIMEOUT_MS = 120_000;

/** A caller that gives up (its deadline passes) when `leave()` is called. */
function caller(deadlineMs = T0 + 2_000) {
  let gone = false;
  const c: Caller & { leave(): void } = {
    deadline: iso(deadlineMs),
    gaveUp: () => (gone ? { at: iso(deadlineMs), reason: 'deadline' } : undefined),
    leave: () => void (gone = true),
  };
  return c;
}
const goneCaller = (deadlineMs?: number) => {
  const c = caller(deadlineMs);
  c.leave();
  return c;
};

async function world(log = new MemoryEventLog(), parts?: { runtime: FakeRuntime; files: FakeFiles }) {
  const ledger = await Ledger.load(log);
  if (log.head() === 0) await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
  const deps: CreateContainerDeps & { runtime: FakeRuntime; files: FakeFiles } = {
    ledger,
    names: new NameReservations(ledger.projections.containerNames),
    images: new FakeImages(),
    runtime: parts?.runtime ?? new FakeRuntime(),
    files: parts?.files ?? new FakeFiles(),
    specs: new FakeSpecs(),
    locks: new KeyedLock(),
  };
  const leftovers = () => ({
    snapshots: deps.runtime.snapshots.size,
    containers: deps.runtime.containers.size,
    dirs: deps.files.dirs.size,
  });
  const reap = (nowMs: number) =>
    reapUnclaimed(
      {
        ledger,
        containers: deps,
        sandboxes: {
          ledger,
          names: new NameReservations(ledger.projections.sandboxNames),
          runtime: deps.runtime,
          tasks: new FakeTasks(),
          network: new FakeNetwork(),
          files: new FakePodFiles(),
        },
        unclaimedTimeoutMs: TIMEOUT_MS,
      },
      { nowMs, correlationId: 'reaper' },
    );
  return { log, ledger, deps, leftovers, reap };
}

let counter = 0;
function command(requestDigest = digest('request'), c?: Caller): CreateContainerCommand {
  counter++;
  return {
    containerId: hexId(`undelivered-${counter}`),
    requestDigest,
    correlationId: `req-${counter}`,
    now: iso(T0),
    request: {
      podSandboxId: pod.id,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, labels: {}, annotations: {} },
      sandboxConfig: {},
    },
    ...(c ? { caller: c } : {}),
  };
}

const types = (events: LedgerEvent[]) => events.map((e) => e.type);

describe('retry decisions', () => {
  const facts = (f: Partial<RetryFacts>): RetryFacts => ({ requestDigest: 'A', holderUndelivered: false, ...f });
  const cases: Array<[string, Partial<RetryFacts>, string]> = [
    ['nothing holds the name', {}, 'create'],
    ['the same request runs here', { running: { requestDigest: 'A', id: 'x', callerWaits: false } }, 'wait'],
    [
      'another request runs and its caller waits',
      { running: { requestDigest: 'B', id: 'x', callerWaits: true } },
      'conflict',
    ],
    [
      'another request runs and its caller gave up',
      { running: { requestDigest: 'B', id: 'x', callerWaits: false } },
      'waitThenDecide',
    ],
    ['the same request finished', { hold: { holderId: 'x', requestDigest: 'A' }, holderState: 'CREATED' }, 'serve'],
    [
      'the same request finished, undelivered',
      { hold: { holderId: 'x', requestDigest: 'A' }, holderState: 'CREATED', holderUndelivered: true },
      'serve',
    ],
    [
      'another request finished, delivered',
      { hold: { holderId: 'x', requestDigest: 'B' }, holderState: 'CREATED' },
      'create',
    ],
    [
      'another request finished, undelivered',
      { hold: { holderId: 'x', requestDigest: 'B' }, holderState: 'CREATED', holderUndelivered: true },
      'replace',
    ],
    [
      'a saga left in flight by a crash (recovery settles it)',
      { hold: { holderId: 'x', requestDigest: 'B' }, holderState: 'CREATING', holderUndelivered: true },
      'create',
    ],
  ];
  for (const [given, f, then] of cases) {
    it(`given ${given}, decides ${then}`, () => assert.equal(decideRetry(facts(f)).kind, then));
  }
});

describe('CreateContainer: results no caller got', () => {
  it('writes nothing beyond the saga when its caller is still there', async () => {
    const { log, ledger, deps } = await world();
    const id = await createContainer(deps, command(digest('request'), caller()));
    assert.deepEqual(types(await log.readStream(containerStream(id))), [
      'NameReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'ContainerCreated',
    ]);
    assert.equal(ledger.projections.undelivered.size, 0);
  });

  it('records ResultUndelivered with the deadline when the caller gave up before the saga ended', async () => {
    const { log, ledger, deps } = await world();
    const id = await createContainer(deps, command(digest('request'), goneCaller(T0 + 2_000)));
    const last = (await log.readStream(containerStream(id))).at(-1) as LedgerEvent<'ResultUndelivered'>;
    assert.equal(last.type, 'ResultUndelivered');
    assert.deepEqual(last.data, {
      name: NAME,
      requestDigest: digest('request'),
      reason: 'deadline',
      gaveUpAt: iso(T0 + 2_000),
      callerDeadline: iso(T0 + 2_000),
    });
    assert.equal(ledger.projections.undelivered.get(containerStream(id))?.name, NAME);
  });

  it('lets a retry with the same digest claim it: the same id, RetryServed, and no longer undelivered', async () => {
    const { log, ledger, deps } = await world();
    const first = await createContainer(deps, command(digest('request'), goneCaller()));
    const retry = await createContainer(deps, command(digest('request'), caller()));
    assert.equal(retry, first);
    assert.deepEqual(types(await log.readStream(containerStream(first))).slice(-2), [
      'ResultUndelivered',
      'RetryServed',
    ]);
    assert.equal(ledger.projections.undelivered.size, 0);
    assert.equal(deps.runtime.containers.size, 1);
  });

  it('records it undelivered again when the claiming retry gave up too', async () => {
    const { log, ledger, deps } = await world();
    const first = await createContainer(deps, command(digest('request'), goneCaller(T0 + 2_000)));
    await createContainer(deps, command(digest('request'), goneCaller(T0 + 9_000)));
    assert.deepEqual(types(await log.readStream(containerStream(first))).slice(-3), [
      'ResultUndelivered',
      'RetryServed',
      'ResultUndelivered',
    ]);
    assert.equal(ledger.projections.undelivered.get(containerStream(first))?.callerDeadline, iso(T0 + 9_000));
  });

  it('replaces an undelivered result when a request with another digest comes: the old one removed and recorded, nothing leaked', async () => {
    const { log, ledger, deps, leftovers } = await world();
    const old = await createContainer(deps, command(digest('v1'), goneCaller()));
    const fresh = await createContainer(deps, command(digest('v2'), caller()));
    assert.notEqual(fresh, old);
    const removed = (await log.readStream(containerStream(old))).at(-1) as LedgerEvent<'ContainerRemoved'>;
    assert.equal(removed.type, 'ContainerRemoved');
    assert.equal(removed.data.discarded?.reason, 'superseded');
    assert.equal(removed.data.discarded?.supersededBy, digest('v2'));
    assert.ok(removed.data.discarded?.undone.every((u) => u.ok));
    assert.deepEqual(leftovers(), { snapshots: 1, containers: 1, dirs: 1 });
    assert.ok(deps.runtime.containers.has(fresh) && !deps.runtime.containers.has(old));
    assert.equal(ledger.projections.containerNames.get(NAME)?.holderId, fresh);
    assert.equal(ledger.projections.containers.get(old), undefined);
  });

  it('refuses another digest with ALREADY_EXISTS naming the holder when the result was delivered', async () => {
    const { deps } = await world();
    const first = await createContainer(deps, command(digest('v1'), caller()));
    await assert.rejects(
      createContainer(deps, command(digest('v2'), caller())),
      (e: unknown) => e instanceof NameConflictError && e.holderId === first,
    );
    assert.equal(deps.runtime.containers.size, 1);
  });

  it('treats a started container as delivered: someone used its id', async () => {
    const { ledger, deps } = await world();
    const first = await createContainer(deps, command(digest('v1'), goneCaller()));
    await ledger.append(containerStream(first), ledger.projections.containers.get(first)!.version, [
      ev.containerStarted(),
    ]);
    await assert.rejects(
      createContainer(deps, command(digest('v2'), caller())),
      (e: unknown) => e instanceof NameConflictError && e.holderId === first,
    );
  });

  it('makes a request with another digest wait for a running saga whose caller gave up, then replaces its result', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { ledger, deps, leftovers } = await world();
    deps.failpoints = {
      hit: async (point: string) => (point === 'CreateContainer.SnapshotPrepared' ? gate : undefined),
    };
    const firstCaller = caller();
    const first = createContainer(deps, command(digest('v1'), firstCaller));
    await new Promise((r) => setTimeout(r, 5));
    // Its caller is still there: another request is refused, naming the id it will have.
    await assert.rejects(createContainer(deps, command(digest('v2'), caller())), NameConflictError);
    firstCaller.leave();
    const second = createContainer(deps, command(digest('v2'), caller()));
    release();
    const [oldId, newId] = await Promise.all([first, second]);
    assert.notEqual(oldId, newId);
    assert.equal(ledger.projections.containerNames.get(NAME)?.holderId, newId);
    assert.deepEqual(leftovers(), { snapshots: 1, containers: 1, dirs: 1 });
  });

  it('lets a retry that waited for the running saga claim it when the first caller gave up', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { log, ledger, deps } = await world();
    deps.failpoints = {
      hit: async (point: string) => (point === 'CreateContainer.SnapshotPrepared' ? gate : undefined),
    };
    const firstCaller = caller();
    const first = createContainer(deps, command(digest('request'), firstCaller));
    await new Promise((r) => setTimeout(r, 5));
    const retry = createContainer(deps, command(digest('request'), caller()));
    firstCaller.leave();
    release();
    const [a, b] = await Promise.all([first, retry]);
    assert.equal(a, b);
    assert.deepEqual(types(await log.readStream(containerStream(a))).slice(-2), ['ResultUndelivered', 'RetryServed']);
    assert.equal(ledger.projections.undelivered.size, 0);
  });
});

describe('results nobody claims', () => {
  it('are removed once the timeout past the caller deadline has passed, not before', async () => {
    const { log, ledger, deps, leftovers, reap } = await world();
    const id = await createContainer(deps, command(digest('request'), goneCaller(T0 + 2_000)));
    const early = await reap(T0 + 2_000 + TIMEOUT_MS - 1);
    assert.deepEqual(early.outcomes, []);
    assert.equal(early.nextAtMs, T0 + 2_000 + TIMEOUT_MS);
    const late = await reap(T0 + 2_000 + TIMEOUT_MS);
    assert.deepEqual(
      late.outcomes.map((o) => o.result),
      ['removed'],
    );
    assert.equal(late.nextAtMs, undefined);
    const removed = (await log.readStream(containerStream(id))).at(-1) as LedgerEvent<'ContainerRemoved'>;
    assert.equal(removed.data.discarded?.reason, 'unclaimed');
    assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
    assert.equal(ledger.projections.containerNames.size, 0);
  });

  it('are not removed once a retry claimed them', async () => {
    const { deps, leftovers, reap } = await world();
    await createContainer(deps, command(digest('request'), goneCaller()));
    await createContainer(deps, command(digest('request'), caller()));
    assert.deepEqual((await reap(T0 + 10 * TIMEOUT_MS)).outcomes, []);
    assert.deepEqual(leftovers(), { snapshots: 1, containers: 1, dirs: 1 });
  });

  it('stay recorded when an undo fails, and go at the next sweep', async () => {
    const { deps, leftovers, reap } = await world();
    await createContainer(deps, command(digest('request'), goneCaller()));
    deps.runtime.failOn('deleteContainer');
    assert.deepEqual(
      (await reap(T0 + 2 * TIMEOUT_MS)).outcomes.map((o) => o.result),
      ['failed'],
    );
    assert.deepEqual(
      (await reap(T0 + 2 * TIMEOUT_MS)).outcomes.map((o) => o.result),
      ['removed'],
    );
    assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
  });

  it('orders what is due oldest first and says when the next falls due', () => {
    const r = (seq: number, deadline: number) => ({
      stream: `s${seq}`,
      kind: 'container' as const,
      id: `${seq}`,
      name: `n${seq}`,
      requestDigest: 'd',
      reason: 'deadline' as const,
      gaveUpAt: iso(deadline),
      callerDeadline: iso(deadline),
      seq,
    });
    const { due, nextAtMs } = dueUnclaimed(
      [r(3, T0), r(1, T0 + 500), r(2, T0 + 60_000)],
      T0 + 1_000 + TIMEOUT_MS,
      TIMEOUT_MS,
    );
    assert.deepEqual(
      due.map((d) => d.seq),
      [1, 3],
    );
    assert.equal(nextAtMs, T0 + 60_000 + TIMEOUT_MS);
  });
});

describe('after a restart (read from the log)', () => {
  it('still lets a same-digest retry claim the result, another digest replace it, and the timeout remove it', async () => {
    const before = await world();
    const claimed = await createContainer(before.deps, command(digest('claimed'), goneCaller()));
    const parts = { runtime: before.deps.runtime, files: before.deps.files };
    // Restart: a new ledger from the same log, new name reservations, the same containerd.
    const after = await world(before.log, parts);
    assert.equal(after.ledger.projections.undelivered.size, 1);
    assert.equal(await createContainer(after.deps, command(digest('claimed'), caller())), claimed);
    assert.equal(after.ledger.projections.undelivered.size, 0);

    // Another name, left undelivered, then replaced after a restart.
    const other = { ...command(digest('v1'), goneCaller()) };
    other.request = {
      ...other.request,
      config: { ...(other.request.config as object), metadata: { name: 'side', attempt: 0 } } as never,
    };
    const old = await createContainer(after.deps, other);
    const again = await world(before.log, parts);
    const replacement = { ...command(digest('v2'), caller()), request: other.request };
    const fresh = await createContainer(again.deps, replacement);
    assert.notEqual(fresh, old);
    assert.equal(again.ledger.projections.containers.get(old), undefined);

    // And a third, unclaimed across a restart.
    const third = { ...command(digest('v3'), goneCaller(T0)) };
    third.request = {
      ...third.request,
      config: { ...(third.request.config as object), metadata: { name: 'third', attempt: 0 } } as never,
    };
    const lone = await createContainer(again.deps, third);
    const last = await world(before.log, parts);
    assert.deepEqual(
      (await last.reap(T0 + TIMEOUT_MS)).outcomes.map((o) => [o.stream, o.result]),
      [[containerStream(lone), 'removed']],
    );
    assert.deepEqual(last.leftovers(), { snapshots: 2, containers: 2, dirs: 2 });
  });
});

describe('RunPodSandbox: results no caller got', () => {
  async function podWorld() {
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
    } satisfies RunPodSandboxDeps;
    const leftovers = () => ({
      netns: deps.network.netns.size,
      cni: deps.network.attached.size,
      files: deps.files.pods.size,
      snapshots: deps.runtime.snapshots.size,
      containers: deps.runtime.containers.size,
      tasks: deps.tasks.running.size,
    });
    return { log, ledger, deps, leftovers };
  }
  const podCommand = (requestDigest: string, c: Caller): RunPodSandboxCommand => {
    counter++;
    return {
      sandboxId: hexId(`undelivered-pod-${counter}`),
      requestDigest,
      correlationId: `req-pod-${counter}`,
      now: iso(T0),
      request: {
        config: { metadata: { name: 'web', uid: 'uid-9', namespace: 'default', attempt: 0 } },
        runtimeHandler: '',
      },
      caller: c,
    };
  };
  const ONE = { netns: 1, cni: 1, files: 1, snapshots: 1, containers: 1, tasks: 1 };

  it('replaces an undelivered sandbox for another digest, as RemovePodSandbox would, and leaks nothing', async () => {
    const { log, ledger, deps, leftovers } = await podWorld();
    const old = await runPodSandbox(deps, podCommand(digest('p1'), goneCaller()));
    assert.equal((await log.readStream(sandboxStream(old))).at(-1)?.type, 'ResultUndelivered');
    const fresh = await runPodSandbox(deps, podCommand(digest('p2'), caller()));
    assert.notEqual(fresh, old);
    const removed = (await log.readStream(sandboxStream(old))).at(-1) as LedgerEvent<'SandboxRemoved'>;
    assert.equal(removed.type, 'SandboxRemoved');
    assert.deepEqual(
      removed.data.discarded?.undone.map((u) => u.step),
      ['SandboxReady', 'SnapshotPrepared', 'PauseCreated', 'NetworkSetUp', 'NetworkNamespace', 'PodFiles'],
    );
    assert.deepEqual(leftovers(), ONE);
    assert.equal(ledger.projections.sandboxes.get(old), undefined);
  });

  it('serves a same-digest retry the same sandbox and claims it', async () => {
    const { ledger, deps } = await podWorld();
    const first = await runPodSandbox(deps, podCommand(digest('p1'), goneCaller()));
    assert.equal(await runPodSandbox(deps, podCommand(digest('p1'), caller())), first);
    assert.equal(ledger.projections.undelivered.size, 0);
  });

  it('removes an undelivered sandbox nobody claims, as RemovePodSandbox would, once its time has passed', async () => {
    const { log, ledger, deps, leftovers } = await podWorld();
    const id = await runPodSandbox(deps, podCommand(digest('p1'), goneCaller(T0)));
    const reap = (nowMs: number) =>
      reapUnclaimed(
        {
          ledger,
          containers: {
            ledger,
            names: new NameReservations(ledger.projections.containerNames),
            runtime: deps.runtime,
            files: new FakeFiles(),
          },
          sandboxes: deps,
          unclaimedTimeoutMs: TIMEOUT_MS,
        },
        { nowMs, correlationId: 'reaper' },
      );
    assert.deepEqual((await reap(T0 + TIMEOUT_MS - 1)).outcomes, []);
    assert.deepEqual(
      (await reap(T0 + TIMEOUT_MS)).outcomes.map((o) => [o.stream, o.result]),
      [[sandboxStream(id), 'removed']],
    );
    const removed = (await log.readStream(sandboxStream(id))).at(-1) as LedgerEvent<'SandboxRemoved'>;
    assert.equal(removed.data.discarded?.reason, 'unclaimed');
    assert.deepEqual(leftovers(), { netns: 0, cni: 0, files: 0, snapshots: 0, containers: 0, tasks: 0 });
    assert.equal(ledger.projections.sandboxNames.size, 0);
  });

  it('counts a container created in the sandbox as a claim: another digest then gets ALREADY_EXISTS', async () => {
    const { ledger, deps } = await podWorld();
    const first = await runPodSandbox(deps, podCommand(digest('p1'), goneCaller()));
    const c = { id: hexId('in-pod'), sandboxId: first, name: 'x_web_default_uid-9_0' };
    await ledger.append(containerStream(c.id), 0, [ev.nameReserved(c)]);
    assert.equal(ledger.projections.undelivered.size, 0);
    await assert.rejects(
      runPodSandbox(deps, podCommand(digest('p2'), caller())),
      (e: unknown) => e instanceof NameConflictError && e.holderId === first,
    );
  });
});

describe('the undelivered-results projection', () => {
  const c = { id: hexId('proj-c'), sandboxId: pod.id, name: NAME };
  const undelivered = (correlationId = 'req-x'): NewEvent<'ResultUndelivered'> => ({
    type: 'ResultUndelivered',
    correlationId,
    data: { name: NAME, requestDigest: digest(NAME), reason: 'deadline', gaveUpAt: iso(T0), callerDeadline: iso(T0) },
  });
  const served: NewEvent<'RetryServed'> = {
    type: 'RetryServed',
    correlationId: 'req-retry',
    data: { requestDigest: digest(NAME), servedAt: iso(T0 + 1_000) },
  };

  it('holds a result from ResultUndelivered until a retry claims it, and again when that retry gave up too', async () => {
    const ledger = await Ledger.load(new MemoryEventLog());
    const stream = streams.container(c);
    await ledger.append(stream, 0, [
      ev.nameReserved(c),
      ev.specGenerated(),
      ev.snapshotPrepared(c),
      ev.containerCreated(),
    ]);
    assert.equal(ledger.projections.undelivered.size, 0, 'a created container is delivered unless told otherwise');
    await ledger.append(stream, 4, [undelivered()]);
    assert.deepEqual(ledger.projections.undelivered.get(stream), {
      stream,
      kind: 'container',
      id: c.id,
      name: NAME,
      requestDigest: digest(NAME),
      reason: 'deadline',
      gaveUpAt: iso(T0),
      callerDeadline: iso(T0),
      seq: 5,
    });
    await ledger.append(stream, 5, [served]);
    assert.equal(ledger.projections.undelivered.get(stream), undefined);
    await ledger.append(stream, 6, [undelivered('req-retry')]);
    assert.equal(ledger.projections.undelivered.get(stream)?.seq, 7);
  });

  it('forgets a result that was started, removed, or (for a sandbox) got a container', async () => {
    const ledger = await Ledger.load(new MemoryEventLog());
    const stream = streams.container(c);
    await ledger.append(stream, 0, [
      ev.nameReserved(c),
      ev.specGenerated(),
      ev.snapshotPrepared(c),
      ev.containerCreated(),
      undelivered(),
    ]);
    await ledger.append(stream, 5, [ev.containerStarted()]);
    assert.equal(ledger.projections.undelivered.size, 0);
    const p = sandbox('proj-pod', 'pp_default_uid-pp_0');
    await ledger.append(streams.sandbox(p), 0, [
      ev.sandboxReserved(p),
      ev.sandboxReady(),
      { ...undelivered(), data: { ...undelivered().data, name: p.name } },
    ]);
    assert.equal(ledger.projections.undelivered.get(streams.sandbox(p))?.kind, 'sandbox');
    const inPod = { id: hexId('proj-in-pod'), sandboxId: p.id, name: 'x_pp_default_uid-pp_0' };
    await ledger.append(streams.container(inPod), 0, [ev.nameReserved(inPod)]);
    assert.equal(ledger.projections.undelivered.size, 0);
    const q = sandbox('proj-pod2', 'pq_default_uid-pq_0');
    await ledger.append(streams.sandbox(q), 0, [
      ev.sandboxReserved(q),
      ev.sandboxReady(),
      { ...undelivered(), data: { ...undelivered().data, name: q.name } },
    ]);
    await ledger.append(streams.sandbox(q), 3, [ev.sandboxRemoved(q)]);
    assert.equal(ledger.projections.undelivered.size, 0);
  });
});
