import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createContainer,
  type CreateContainerCommand,
  type CreateContainerDeps,
} from '../../src/commands/create-container.js';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import type { Failpoints } from '../../src/commands/saga.js';
import { InvalidArgumentError, NameConflictError, NotFoundError } from '../../src/domain/errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { containerStream } from '../../src/domain/ids.js';
import { FakeFiles, FakeImages, FakeRuntime, FakeSpecs } from '../support/fake-runtime.js';
import { digest, ev, hexId, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

const pod = sandbox('pod1', 'web_default_uid-1_0');
const STEPS = [
  'NameReserved',
  'SpecGenerated',
  'HostPaths',
  'Directories',
  'IoPrepared',
  'ContainerRecord',
  'SnapshotPrepared',
  'ContainerCreated',
];

async function world(failpoints?: Failpoints) {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
  const deps = {
    ledger,
    names: new NameReservations(ledger.projections.containerNames),
    images: new FakeImages(),
    runtime: new FakeRuntime(),
    files: new FakeFiles(),
    specs: new FakeSpecs(),
    ...(failpoints ? { failpoints } : {}),
  } satisfies CreateContainerDeps;
  const leftovers = () => ({
    snapshots: deps.runtime.snapshots.size,
    containers: deps.runtime.containers.size,
    dirs: deps.files.dirs.size,
  });
  return { log, ledger, deps, leftovers };
}

let counter = 0;
function command(
  overrides: Partial<CreateContainerCommand['request']> = {},
  configPatch: Record<string, unknown> = {},
): CreateContainerCommand {
  return {
    containerId: hexId(`container-${counter++}`),
    requestDigest: digest('request'),
    correlationId: `req-${counter}`,
    now: '2026-11-28T10:00:00.000Z',
    request: {
      podSandboxId: pod.id,
      config: {
        metadata: { name: 'app', attempt: 0 },
        image: { image: 'busybox' },
        labels: { tier: 'web' },
        annotations: {},
        ...configPatch,
      },
      sandboxConfig: {},
      ...overrides,
    },
  };
}

const types = (events: LedgerEvent[]) => events.map((e) => e.type);

describe('CreateContainer', () => {
  it('records each step and leaves a CREATED container with its name held', async () => {
    const { log, ledger, deps } = await world();
    const cmd = command();
    const id = await createContainer(deps, cmd);
    assert.equal(id, cmd.containerId);
    assert.deepEqual(types(await log.readStream(containerStream(id))), [
      'NameReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'ContainerCreated',
    ]);
    const record = ledger.projections.containers.get(id)!;
    assert.equal(record.state, 'CREATED');
    assert.equal(record.name, 'app_web_default_uid-1_0');
    assert.equal(ledger.projections.containerNames.get('app_web_default_uid-1_0')?.holderId, id);
    assert.deepEqual(deps.runtime.snapshots.get(id), {
      snapshotter: 'overlayfs',
      key: id,
      parent: digest('busybox-chain'),
    });
    assert.equal(deps.runtime.containers.get(id)?.runtime, 'io.containerd.runc.v2');
    assert.equal(deps.files.fifos.get(id)?.terminal, false);
  });

  for (const step of STEPS) {
    it(`compensates a failure at ${step}: nothing left behind, the name free, and a retry succeeds`, async () => {
      let armed = true;
      const { log, ledger, deps, leftovers } = await world({
        hit: async (point) => {
          if (armed && point === `CreateContainer.${step}`) {
            armed = false;
            throw new Error(`injected at ${step}`);
          }
        },
      });
      const cmd = command();
      await assert.rejects(createContainer(deps, cmd), new RegExp(`injected at ${step}`));
      const events = await log.readStream(containerStream(cmd.containerId));
      assert.equal(events.at(-1)?.type, 'Compensated');
      assert.equal((events.at(-1) as LedgerEvent<'Compensated'>).data.failedStep, step);
      assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
      assert.equal(ledger.projections.containerNames.size, 0);
      assert.equal(ledger.projections.containers.size, 0);
      assert.equal(ledger.projections.operations.size, 0);
      const retry = await createContainer(deps, command());
      assert.equal(ledger.projections.containers.get(retry)?.state, 'CREATED');
    });
  }

  it('makes a missing mount host path, records it before the next side effect, and keeps it (and its record) when a later step fails', async () => {
    let armed = true;
    const { log, deps, leftovers } = await world({
      hit: async (point) => {
        if (armed && point === 'CreateContainer.SnapshotPrepared') {
          armed = false;
          throw new Error('injected at SnapshotPrepared');
        }
      },
    });
    const missing = { field: 'config.mounts[1].host_path', path: '/data/new', dev: 0, ino: 0, absent: true };
    const present = { field: 'config.mounts[0].host_path', path: '/data/old', dev: 8, ino: 42 };
    deps.specs = new FakeSpecs({ mountSources: [present, missing] });
    const first = command();
    await assert.rejects(createContainer(deps, first), /injected at SnapshotPrepared/);
    const events = await log.readStream(containerStream(first.containerId));
    assert.deepEqual(types(events), ['NameReserved', 'SpecGenerated', 'HostPathCreated', 'Compensated']);
    assert.deepEqual(events[2]!.data, {
      field: 'config.mounts[1].host_path',
      path: '/data/new',
      created: ['/data/new'],
      mode: '0755',
    });
    assert.deepEqual(
      (events.at(-1) as LedgerEvent<'Compensated'>).data.undone.map((u) => u.step),
      ['SnapshotPrepared', 'ContainerRecord', 'Directories'],
      'HostPaths has no undo',
    );
    assert.deepEqual([...deps.files.hostPaths], ['/data/new'], 'compensation leaves the directory, as containerd does');
    assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
    // The retry finds it made: nothing more to record.
    const retry = command();
    await createContainer(deps, retry);
    assert.deepEqual(types(await log.readStream(containerStream(retry.containerId))), [
      'NameReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'ContainerCreated',
    ]);
  });

  it('removes a snapshot whose preparation failed after it was made', async () => {
    const { deps, leftovers } = await world();
    deps.runtime.failOn('prepareSnapshot');
    await assert.rejects(createContainer(deps, command()), /prepareSnapshot failed/);
    assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
  });

  it('refuses bad input before any event is written', async () => {
    const cases: Array<[CreateContainerCommand, RegExp, new (...args: never[]) => Error]> = [
      [command({ config: null }), /^config: must be set/, InvalidArgumentError],
      [command({}, { metadata: null }), /config\.metadata\.name/, InvalidArgumentError],
      [command({}, { image: { image: '  ' } }), /config\.image\.image/, InvalidArgumentError],
      [command({ podSandboxId: '' }), /pod_sandbox_id/, InvalidArgumentError],
      [command({ podSandboxId: hexId('nope') }), /sandbox/, NotFoundError],
      [command({}, { image: { image: 'nginx' } }), /image "nginx" not found/, NotFoundError],
      [
        command({}, { linux: { securityContext: { runAsGroup: { value: '5' }, runAsUser: null } } }),
        /run_as_group/,
        InvalidArgumentError,
      ],
    ];
    for (const [cmd, message, type] of cases) {
      const { log, deps, leftovers } = await world();
      await assert.rejects(
        createContainer(deps, cmd),
        (e: unknown) => e instanceof type && message.test((e as Error).message),
      );
      assert.equal(log.head(), 2, `${message}: no event beyond the sandbox's`);
      assert.deepEqual(leftovers(), { snapshots: 0, containers: 0, dirs: 0 });
    }
  });

  it('refuses a name that another request holds, naming the holder', async () => {
    const { deps } = await world();
    const first = await createContainer(deps, command());
    const other = { ...command(), requestDigest: digest('another request') };
    await assert.rejects(
      createContainer(deps, other),
      (e: unknown) => e instanceof NameConflictError && e.holderId === first && /reserved for/.test(e.message),
    );
  });

  it('answers a retry of the same request with the first id and a RetryServed record, creating nothing', async () => {
    const { log, deps } = await world();
    const first = await createContainer(deps, command());
    const retry = command({}, {});
    assert.equal(await createContainer(deps, retry), first);
    assert.deepEqual(types(await log.readStream(containerStream(first))).slice(-1), ['RetryServed']);
    assert.equal(deps.runtime.containers.size, 1);
  });

  it('lets one of 16 concurrent calls with one name create it: the same request waits for its id, another gets ALREADY_EXISTS', async () => {
    const { ledger, deps } = await world();
    const calls = Array.from({ length: 16 }, (_, i) =>
      createContainer(deps, i % 2 === 0 ? command() : { ...command(), requestDigest: digest(`other-${i}`) }),
    );
    const results = await Promise.allSettled(calls);
    const ids = new Set(
      results.filter((r): r is PromiseFulfilledResult<string> => r.status === 'fulfilled').map((r) => r.value),
    );
    assert.equal(ids.size, 1);
    assert.equal(
      results.filter((r) => r.status === 'fulfilled').length,
      8,
      `every call with the first request gets its id: ${results.map((r) => (r.status === 'fulfilled' ? 'ok' : String(r.reason))).join(' | ')}`,
    );
    for (const r of results)
      if (r.status === 'rejected') assert.ok(r.reason instanceof NameConflictError, String(r.reason));
    assert.equal(ledger.projections.containers.size, 1);
    assert.equal(deps.runtime.snapshots.size, 1);
  });
});
