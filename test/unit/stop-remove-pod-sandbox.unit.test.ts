import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContainer } from '../../src/commands/create-container.js';
import { KeyedLock } from '../../src/commands/keyed-lock.js';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import { removePodSandbox } from '../../src/commands/remove-pod-sandbox.js';
import { runPodSandbox } from '../../src/commands/run-pod-sandbox.js';
import { stopPodSandbox } from '../../src/commands/stop-pod-sandbox.js';
import { runUndos, sandboxUndos } from '../../src/commands/undo-by-id.js';
import { sandboxStream } from '../../src/domain/ids.js';
import {
  FakeFiles,
  FakeImages,
  FakeLogs,
  FakeNetwork,
  FakePodFiles,
  FakeRuntime,
  FakeSandboxSpecs,
  FakeSpecs,
  FakeTasks,
} from '../support/fake-runtime.js';
import { digest, hexId } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

const PORTS = [
  { protocol: 'TCP', containerPort: 80, hostPort: 30080, hostIp: '' },
  { protocol: 'UDP', containerPort: 53, hostPort: 30053, hostIp: '127.0.0.1' },
];

async function podWithContainer(
  portMappings: Array<{ protocol: string; containerPort: number; hostPort: number; hostIp: string }> = [],
) {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  const images = new FakeImages();
  const runtime = new FakeRuntime();
  const tasks = new FakeTasks();
  const network = new FakeNetwork();
  const podFiles = new FakePodFiles();
  const containerFiles = new FakeFiles();
  const common = { requestDigest: digest('r'), correlationId: 'req', now: '2026-11-28T10:00:00.000Z' };
  const podConfig = { metadata: { name: 'web', uid: 'u', namespace: 'default', attempt: 0 }, portMappings };
  const sandboxId = await runPodSandbox(
    {
      ledger,
      names: new NameReservations(ledger.projections.sandboxNames),
      images,
      runtime,
      tasks,
      network,
      files: podFiles,
      specs: new FakeSandboxSpecs(),
      sandboxImage: 'busybox',
    },
    { ...common, sandboxId: hexId('pod'), request: { config: podConfig } },
  );
  const containerId = await createContainer(
    {
      ledger,
      names: new NameReservations(ledger.projections.containerNames),
      images,
      runtime,
      files: containerFiles,
      specs: new FakeSpecs(),
    },
    {
      ...common,
      containerId: hexId('ctr'),
      request: {
        podSandboxId: sandboxId,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' } },
        sandboxConfig: podConfig,
      },
    },
  );
  const lifecycle = {
    ledger,
    locks: new KeyedLock(),
    tasks,
    logs: new FakeLogs(),
    files: containerFiles,
    runtime,
    oomed: new Set<string>(),
    tasksDeleted: new Set<string>(),
    snapshotter: 'overlayfs',
  };
  const deps = { ledger, tasks, network, runtime, containerFiles, podFiles, snapshotter: 'overlayfs', lifecycle };
  return { log, ledger, deps, sandboxId, containerId, runtime, tasks, network, podFiles, containerFiles };
}

const op = (sandboxId: string) => ({ sandboxId, correlationId: 'req-stop', now: '2026-11-28T10:05:00.000Z' });

describe('StopPodSandbox and RemovePodSandbox', () => {
  it('stops the pause task and releases the network, once; stopping again or an unknown id is fine', async () => {
    const w = await podWithContainer();
    await stopPodSandbox(w.deps, op(w.sandboxId));
    assert.equal(w.ledger.projections.sandboxes.get(w.sandboxId)?.state, 'NOTREADY');
    assert.equal(w.tasks.running.size, 0);
    assert.equal(w.network.netns.size, 0);
    assert.equal(w.network.attached.size, 0);
    const head = w.log.head();
    await stopPodSandbox(w.deps, op(w.sandboxId));
    await stopPodSandbox(w.deps, op(hexId('never')));
    assert.equal(w.log.head(), head, 'no new event for a repeated or unknown stop');
  });

  it('removes the pod, its containers, their snapshots and dirs, and frees every name', async () => {
    const w = await podWithContainer();
    await removePodSandbox(w.deps, op(w.sandboxId));
    const p = w.ledger.projections;
    assert.equal(p.sandboxes.size, 0);
    assert.equal(p.containers.size, 0);
    assert.equal(p.containerNames.size, 0);
    assert.equal(p.sandboxNames.size, 0);
    assert.equal(w.runtime.containers.size, 0);
    assert.equal(w.runtime.snapshots.size, 0);
    assert.equal(w.containerFiles.dirs.size, 0);
    assert.equal(w.podFiles.pods.size, 0);
    assert.deepEqual(
      (await w.log.readStream(sandboxStream(w.sandboxId))).slice(-2).map((e) => e.type),
      ['SandboxStopped', 'SandboxRemoved'],
    );
    const head = w.log.head();
    await removePodSandbox(w.deps, op(w.sandboxId));
    assert.equal(w.log.head(), head, 'removing again writes nothing');
  });

  it('gives CNI DEL what ADD got, port mappings included, from the log after a restart', async () => {
    const w = await podWithContainer(PORTS);
    const added = w.network.attached.get(w.sandboxId)!;
    assert.equal(added.portMappings.length, 2);
    // A restart: projections rebuilt from the log, a network port that never saw the ADD.
    const ledger = await Ledger.load(w.log);
    const network = new FakeNetwork();
    await stopPodSandbox({ ...w.deps, ledger, network, lifecycle: { ...w.deps.lifecycle, ledger } }, op(w.sandboxId));
    assert.deepEqual(network.tornDown, [added]);
  });

  it('gives the undo of a sandbox (recovery, unclaimed results) the port mappings ADD got', async () => {
    const w = await podWithContainer(PORTS);
    const added = w.network.attached.get(w.sandboxId)!;
    const undos = sandboxUndos(
      { ...w.deps, podFiles: w.podFiles },
      w.sandboxId,
      'overlayfs',
      w.ledger.projections.sandboxes.get(w.sandboxId),
    );
    const { results } = await runUndos(undos, () => 0);
    assert.ok(
      results.every((r) => r.ok),
      JSON.stringify(results),
    );
    assert.deepEqual(w.network.tornDown, [added]);
  });
});
