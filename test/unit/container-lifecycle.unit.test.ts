import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ociLinuxResources,
  recordExit,
  removeContainer,
  startContainer,
  stopContainer,
  stopSignalNumber,
  updateContainerResources,
  type LifecycleDeps,
} from '../../src/commands/container-lifecycle.js';
import { createContainer } from '../../src/commands/create-container.js';
import { KeyedLock } from '../../src/commands/keyed-lock.js';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import { FailedPreconditionError, NotFoundError } from '../../src/domain/errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { containerStream } from '../../src/domain/ids.js';
import { FakeFiles, FakeImages, FakeLogs, FakeRuntime, FakeSpecs, FakeTasks } from '../support/fake-runtime.js';
import { digest, ev, hexId, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

const pod = sandbox('pod1', 'web_default_uid-1_0');
const NOW = '2026-11-28T10:01:00.000Z';

let counter = 0;
async function world() {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
  const runtime = new FakeRuntime();
  const files = new FakeFiles();
  const deps: LifecycleDeps = {
    ledger,
    locks: new KeyedLock(),
    tasks: new FakeTasks(),
    logs: new FakeLogs(),
    files,
    runtime,
    oomed: new Set(),
    tasksDeleted: new Set(),
    snapshotter: 'overlayfs',
  };
  const create = async (logPath = '/logs/app.log') =>
    createContainer(
      {
        ledger,
        names: new NameReservations(ledger.projections.containerNames),
        images: new FakeImages(),
        runtime,
        files,
        specs: new FakeSpecs({ logPath }),
      },
      {
        containerId: hexId(`lifecycle-${counter++}`),
        requestDigest: digest('request'),
        correlationId: 'req-create',
        now: '2026-11-28T10:00:00.000Z',
        request: {
          podSandboxId: pod.id,
          config: { metadata: { name: `app${counter}`, attempt: 0 }, image: { image: 'busybox' } },
          sandboxConfig: {},
        },
      },
    );
  const types = async (id: string) => (await log.readStream(containerStream(id))).map((e) => e.type);
  const last = async <T extends LedgerEvent['type']>(id: string, type: T) =>
    (await log.readStream(containerStream(id))).filter((e) => e.type === type).at(-1) as LedgerEvent<T>;
  return {
    ledger,
    deps,
    runtime,
    files,
    tasks: deps.tasks as FakeTasks,
    logs: deps.logs as FakeLogs,
    create,
    types,
    last,
  };
}

const op = (containerId: string) => ({ containerId, correlationId: 'req-op', now: NOW });

describe('container lifecycle', () => {
  it('starts a created container: its output goes to its log path, then ContainerStarted with the pid', async () => {
    const w = await world();
    const id = await w.create('/logs/app.log');
    await startContainer(w.deps, op(id));
    const record = w.ledger.projections.containers.get(id)!;
    assert.equal(record.state, 'RUNNING');
    assert.equal(record.pid, w.tasks.running.get(id));
    assert.equal(record.startedAt, NOW);
    assert.equal(w.logs.attachedTo.get(id), '/logs/app.log');
    assert.deepEqual((await w.types(id)).slice(-1), ['ContainerStarted']);
  });

  it('refuses to start a container that is not CREATED, or whose pod is not ready', async () => {
    const w = await world();
    const id = await w.create();
    await startContainer(w.deps, op(id));
    await assert.rejects(
      startContainer(w.deps, op(id)),
      (e: unknown) => e instanceof FailedPreconditionError && /RUNNING, not CREATED/.test(e.message),
    );
    await assert.rejects(startContainer(w.deps, op(hexId('nope'))), NotFoundError);
    const other = await w.create();
    await w.ledger.append(streams.sandbox(pod), w.ledger.projections.sandboxes.get(pod.id)!.version, [
      ev.sandboxStopped(),
    ]);
    await assert.rejects(startContainer(w.deps, op(other)), /not ready/);
  });

  it('leaves a container whose task cannot start EXITED with StartError, as containerd does, and rethrows', async () => {
    const w = await world();
    const id = await w.create();
    w.tasks.failOn('start');
    await assert.rejects(startContainer(w.deps, op(id)), /start failed/);
    const record = w.ledger.projections.containers.get(id)!;
    assert.equal(record.state, 'EXITED');
    assert.equal(record.exitCode, 128);
    assert.equal(record.reason, 'StartError');
    assert.match(record.message ?? '', /failed to start: .*start failed/);
    assert.equal(w.logs.attached(id), false, 'the log copier was abandoned');
  });

  it('stops with the stop signal and records the stop and the exit; stopping again, a created container or an unknown id is a no-op', async () => {
    const w = await world();
    const id = await w.create();
    await startContainer(w.deps, op(id));
    await stopContainer(w.deps, { ...op(id), timeoutMs: 10_000 });
    const record = w.ledger.projections.containers.get(id)!;
    assert.equal(record.state, 'EXITED');
    assert.equal(record.exitCode, 143);
    assert.equal(record.reason, 'Error');
    const stopped = await w.last(id, 'ContainerStopped');
    assert.deepEqual(stopped.data, { signal: 'SIGTERM', timeoutMs: 10_000, killed: false, stoppedAt: NOW });
    const before = (await w.types(id)).length;
    await stopContainer(w.deps, { ...op(id), timeoutMs: 10_000 });
    const created = await w.create();
    await stopContainer(w.deps, { ...op(created), timeoutMs: 10_000 });
    assert.equal((await w.types(id)).length, before);
    assert.deepEqual((await w.types(created)).slice(-1), ['ContainerCreated']);
    const head = w.ledger.log.head();
    await stopContainer(w.deps, { ...op(hexId('nope')), timeoutMs: 0 });
    assert.equal(w.ledger.log.head(), head, 'stopping an unknown id writes nothing');
  });

  it('sends SIGKILL at once when the timeout is 0', async () => {
    const w = await world();
    const id = await w.create();
    await startContainer(w.deps, op(id));
    await stopContainer(w.deps, { ...op(id), timeoutMs: 0 });
    assert.deepEqual((await w.last(id, 'ContainerStopped')).data, {
      signal: 'SIGKILL',
      timeoutMs: 0,
      killed: true,
      stoppedAt: NOW,
    });
    assert.equal(w.ledger.projections.containers.get(id)!.exitCode, 137);
  });

  it('records an exit once, with Completed, Error or OOMKilled', async () => {
    const w = await world();
    const [a, b, c] = [await w.create(), await w.create(), await w.create()];
    for (const id of [a, b, c]) await startContainer(w.deps, op(id));
    w.deps.oomed.add(c);
    const exit = (id: string, exitCode: number) =>
      recordExit(w.deps, {
        containerId: id,
        exitCode,
        exitedAt: '2026-11-28T10:02:00.000000000Z',
        correlationId: 'exit',
      });
    assert.equal(await exit(a, 0), true);
    assert.equal(await exit(b, 3), true);
    assert.equal(await exit(c, 137), true);
    assert.equal(await exit(a, 0), false, 'a second report of the same exit writes nothing');
    const reasons = [a, b, c].map((id) => [
      w.ledger.projections.containers.get(id)!.reason,
      w.ledger.projections.containers.get(id)!.exitCode,
    ]);
    assert.deepEqual(reasons, [
      ['Completed', 0],
      ['Error', 3],
      ['OOMKilled', 137],
    ]);
    assert.equal(w.ledger.projections.containers.get(b)!.finishedAt, '2026-11-28T10:02:00.000000000Z');
    assert.equal(w.deps.oomed.size, 0);
  });

  it('an exit reported while a stop runs is recorded once', async () => {
    const w = await world();
    const id = await w.create();
    await startContainer(w.deps, op(id));
    const [, recorded] = await Promise.all([
      stopContainer(w.deps, { ...op(id), timeoutMs: 1000 }),
      recordExit(w.deps, { containerId: id, exitCode: 143, exitedAt: NOW, correlationId: 'exit' }),
    ]);
    assert.equal(recorded, false);
    assert.equal((await w.types(id)).filter((t) => t === 'ContainerExited').length, 1);
  });

  it('removes a running container: stops it, deletes task, record, snapshot and dirs, frees the name; again or unknown is fine', async () => {
    const w = await world();
    const id = await w.create();
    const name = w.ledger.projections.containers.get(id)!.name;
    await startContainer(w.deps, op(id));
    await removeContainer(w.deps, op(id));
    assert.equal(w.ledger.projections.containers.get(id), undefined);
    assert.equal(w.ledger.projections.containerNames.get(name), undefined);
    assert.deepEqual(
      {
        tasks: w.tasks.running.size,
        containers: w.runtime.containers.size,
        snapshots: w.runtime.snapshots.size,
        dirs: w.files.dirs.size,
        logs: w.logs.attachedTo.size,
      },
      { tasks: 0, containers: 0, snapshots: 0, dirs: 0, logs: 0 },
    );
    assert.deepEqual((await w.types(id)).slice(-3), ['ContainerStopped', 'ContainerExited', 'ContainerRemoved']);
    await removeContainer(w.deps, op(id));
    await removeContainer(w.deps, op(hexId('never-there')));
  });

  it('deletes a task once: a removal after a stop does not ask again, one after a restart (nothing remembered) does', async () => {
    const w = await world();
    const stopped = await w.create();
    await startContainer(w.deps, op(stopped));
    await stopContainer(w.deps, { ...op(stopped), timeoutMs: 0 });
    assert.deepEqual(w.tasks.deleted, [stopped]);
    await removeContainer(w.deps, op(stopped));
    assert.deepEqual(w.tasks.deleted, [stopped]);
    assert.equal(w.deps.tasksDeleted.size, 0);

    const exited = await w.create();
    await startContainer(w.deps, op(exited));
    assert.equal(
      await recordExit(w.deps, { containerId: exited, exitCode: 0, exitedAt: NOW, correlationId: 'exit' }),
      true,
    );
    w.deps.tasksDeleted.clear(); // what a restarted service knows
    await removeContainer(w.deps, op(exited));
    assert.deepEqual(w.tasks.deleted, [stopped, exited, exited]);
  });

  it("updates a running container's resources and records them; any other state is refused", async () => {
    const w = await world();
    const id = await w.create();
    const resources = {
      cpuPeriod: '100000',
      cpuQuota: '50000',
      cpuShares: '512',
      memoryLimitInBytes: '268435456',
      oomScoreAdj: '0',
      cpusetCpus: '0',
      cpusetMems: '',
    };
    await assert.rejects(updateContainerResources(w.deps, { ...op(id), resources }), FailedPreconditionError);
    await startContainer(w.deps, op(id));
    await updateContainerResources(w.deps, { ...op(id), resources });
    assert.deepEqual(w.tasks.updates.get(id), {
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' },
      memory: { limit: 268435456 },
    });
    assert.deepEqual(w.ledger.projections.containers.get(id)!.resources, resources);
    assert.deepEqual((await w.types(id)).slice(-1), ['ContainerResourcesUpdated']);
  });

  it('leaves unset (zero) CRI resources out of the OCI update', () => {
    assert.deepEqual(
      ociLinuxResources({
        cpuPeriod: '0',
        cpuQuota: '0',
        cpuShares: '0',
        memoryLimitInBytes: '0',
        oomScoreAdj: '0',
        cpusetCpus: '',
        cpusetMems: '',
      }),
      { cpu: {} },
    );
    assert.deepEqual(
      ociLinuxResources({
        cpuPeriod: '',
        cpuQuota: '-1',
        cpuShares: '2',
        memoryLimitInBytes: '',
        oomScoreAdj: '',
        cpusetCpus: '',
        cpusetMems: '0-1',
      }),
      { cpu: { quota: -1, shares: 2, mems: '0-1' } },
    );
  });

  it('reads stop signals as images write them', () => {
    assert.deepEqual(stopSignalNumber('SIGQUIT'), { name: 'SIGQUIT', number: 3 });
    assert.deepEqual(stopSignalNumber('int'), { name: 'SIGINT', number: 2 });
    assert.deepEqual(stopSignalNumber('15'), { name: '15', number: 15 });
    assert.deepEqual(stopSignalNumber(undefined), { name: 'SIGTERM', number: 15 });
    assert.deepEqual(stopSignalNumber('SIGBOGUS'), { name: 'SIGTERM', number: 15 });
  });
});
