import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import {
  ContainerdStats,
  type ContainerStatsSample,
  type SnapshotRef,
} from '../../src/adapters/containerd/containerd-stats.js';
import { ContainerdTasks } from '../../src/adapters/containerd/containerd-tasks.js';
import { RuntimeUnavailableError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { createTestContainer, tearDownRuncTests } from '../support/runc-containers.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';
import { until } from '../support/until.js';

const NAMESPACE = 'cri-ledger-stats-test';
const TEST_TIMEOUT_MS = 120_000;
// How long a container may take to reach a point its script marks; generous for a loaded machine.
const MARKER_WAIT_MS = 60_000;
const MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;
const HELD_BYTES = 8_000_000;
const FILLER_BYTES = 2 * 1024 * 1024;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let stats: ContainerdStats;
let workDir: string;
const created: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-stats-'));
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  tasks = new ContainerdTasks({ api, runcRoot: join(dirname(containerd.address), 'runc') });
  stats = new ContainerdStats({ api });
});

after(async () => {
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

describe('ContainerdStats.containerStats', () => {
  it('reports the memory a running container holds: working set and usage above it, available = limit - working set', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // The shell keeps the 8 MB string in its heap while it waits (no exec, which would free it).
    const c = await startContainer(
      'memory',
      `x=$(head -c ${HELD_BYTES} /dev/zero | tr "\\0" a); touch /allocated; sleep 1000 & wait`,
      MEMORY_LIMIT_BYTES,
    );
    await waitForMarker(c.id, 'allocated');
    const sample = await one(c.id);
    const memory = sample.memory;
    assert.ok(memory, 'a cgroup v1 runc task reports memory');
    assert.ok(BigInt(memory.workingSetBytes) >= BigInt(HELD_BYTES), `working set ${memory.workingSetBytes}`);
    assert.ok(
      BigInt(memory.usageBytes) >= BigInt(memory.workingSetBytes),
      `usage ${memory.usageBytes} below working set ${memory.workingSetBytes}`,
    );
    assert.ok(BigInt(memory.rssBytes) >= BigInt(HELD_BYTES), `rss ${memory.rssBytes}`);
    assert.ok(BigInt(memory.pageFaults) > 0n);
    // One sample, so exact: checks the limit field and the working-set arithmetic against each other.
    assert.equal(BigInt(memory.availableBytes) + BigInt(memory.workingSetBytes), BigInt(MEMORY_LIMIT_BYTES));
    assert.ok(Math.abs(Number(BigInt(sample.timestampNs) / 1_000_000n) - Date.now()) < 60_000, sample.timestampNs);
    await removeAll(c.id);
  });

  it('reports CPU usage that grows after the container burns CPU', { timeout: TEST_TIMEOUT_MS }, async () => {
    const burn = 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done';
    const c = await startContainer(
      'cpu',
      `until [ -e /go ]; do sleep 0.05; done; ${burn}; touch /burnt; sleep 1000 & wait`,
    );
    const first = await one(c.id);
    assert.ok(first.cpu && BigInt(first.cpu.usageCoreNanoSeconds) > 0n, JSON.stringify(first.cpu));
    assert.equal(first.memory?.availableBytes, '0', 'no memory limit, so nothing counts as available');
    writeFileSync(join(rootfs(c.id), 'go'), '');
    await waitForMarker(c.id, 'burnt');
    const second = await one(c.id);
    assert.ok(
      second.cpu && BigInt(second.cpu.usageCoreNanoSeconds) > BigInt(first.cpu.usageCoreNanoSeconds),
      `${first.cpu.usageCoreNanoSeconds} -> ${second.cpu?.usageCoreNanoSeconds}`,
    );
    assert.ok(BigInt(second.timestampNs) > BigInt(first.timestampNs));
    await removeAll(c.id);
  });

  it('leaves out ids without a task: a container never started, an unknown id; an empty list asks nothing', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const running = await startContainer('present', 'sleep 1000 & wait');
    const idle = await createContainer('no-task', ['true']);
    const unknown = newId('unknown');
    const samples = await stats.containerStats([idle.id, running.id, unknown, running.id]);
    assert.deepEqual([...samples.keys()], [running.id]);
    assert.equal(samples.get(running.id)?.containerId, running.id);

    const { api: counting, metricsCalls } = countingMetricsCalls();
    assert.equal((await new ContainerdStats({ api: counting }).containerStats([])).size, 0);
    assert.equal(metricsCalls(), 0, 'no filters would be every task in the namespace');
    await removeAll(running.id);
    await removeAll(idle.id);
  });

  it('returns two containers from one Tasks.Metrics call, each with its own figures', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // The second id has the `.` and `_` a container id may hold; the filter must still match it exactly.
    const a = await startContainer('two-a', 'sleep 1000 & wait');
    const b = await startContainer(
      'two.b_x',
      `x=$(head -c ${HELD_BYTES} /dev/zero | tr "\\0" a); touch /allocated; sleep 1000 & wait`,
    );
    await waitForMarker(b.id, 'allocated');
    const { api: counting, metricsCalls } = countingMetricsCalls();
    const samples = await new ContainerdStats({ api: counting }).containerStats([a.id, b.id]);
    assert.equal(metricsCalls(), 1);
    assert.deepEqual([...samples.keys()].sort(), [a.id, b.id].sort());
    for (const [id, sample] of samples) {
      assert.equal(sample.containerId, id);
      assert.ok(sample.cpu && BigInt(sample.cpu.usageCoreNanoSeconds) > 0n);
      assert.ok(sample.memory && BigInt(sample.memory.usageBytes) > 0n);
    }
    // Each figure is its own cgroup's: only b holds 8 MB.
    assert.ok(BigInt(samples.get(b.id)!.memory!.workingSetBytes) >= BigInt(HELD_BYTES));
    assert.ok(BigInt(samples.get(a.id)!.memory!.workingSetBytes) < BigInt(HELD_BYTES));
    await removeAll(a.id);
    await removeAll(b.id);
  });

  it('still reports a task that exited and is not deleted yet, as containerd does; not once it is deleted', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const c = await startContainer('exited', 'i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done');
    await tasks.wait(c.id);
    const sample = (await stats.containerStats([c.id])).get(c.id);
    assert.ok(sample?.cpu && BigInt(sample.cpu.usageCoreNanoSeconds) > 0n, JSON.stringify(sample));
    await tasks.delete(c.id);
    assert.equal((await stats.containerStats([c.id])).size, 0);
    await removeAll(c.id);
  });

  it('fails with RuntimeUnavailableError when containerd does not answer', async () => {
    const gone = connectContainerd({ address: join(workDir, 'no-such-containerd.sock'), namespace: NAMESPACE });
    try {
      const offline = new ContainerdStats({ api: gone });
      await assert.rejects(offline.containerStats(['x']), RuntimeUnavailableError);
      await assert.rejects(offline.writableLayer('overlayfs', 'x'), RuntimeUnavailableError);
    } finally {
      gone.close();
    }
  });
});

describe('ContainerdStats writable layer', () => {
  it('grows after the container writes into its rootfs, read directly and with containerStats', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const write = `dd if=/dev/zero of=/filler bs=4096 count=${FILLER_BYTES / 4096} && mkdir /d && touch /d/a /d/b`;
    const c = await startContainer(
      'layer',
      `until [ -e /go ]; do sleep 0.05; done; ${write}; touch /written; sleep 1000 & wait`,
    );
    const before = await stats.writableLayer(c.snapshot.snapshotter, c.snapshot.key);
    assert.ok(before && BigInt(before.inodesUsed) > 0n, JSON.stringify(before));
    writeFileSync(join(rootfs(c.id), 'go'), '');
    await waitForMarker(c.id, 'written');
    const grown = await stats.writableLayer(c.snapshot.snapshotter, c.snapshot.key);
    assert.ok(grown);
    assert.ok(
      BigInt(grown.usedBytes) - BigInt(before.usedBytes) >= BigInt(FILLER_BYTES),
      `${before.usedBytes} -> ${grown.usedBytes}`,
    );
    // go, filler, d, d/a, d/b, written.
    assert.ok(
      BigInt(grown.inodesUsed) - BigInt(before.inodesUsed) >= 6n,
      `${before.inodesUsed} -> ${grown.inodesUsed}`,
    );

    const sample = (await stats.containerStats([c.id], { snapshots: new Map([[c.id, c.snapshot]]) })).get(c.id);
    // Nothing writes any more, so the two reads agree.
    assert.deepEqual(sample?.writableLayer, grown);
    assert.ok(sample?.cpu, 'the cgroup figures come with it');
    await removeAll(c.id);
  });

  it('answers a layer it has measured from its cache, and refreshes it in the background once it is old', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const c = await startContainer(
      'cached',
      'until [ -e /go ]; do sleep 0.05; done; touch /a /b /c /written; sleep 1000 & wait',
    );
    const refs = { snapshots: new Map([[c.id, c.snapshot]]) };
    const fresh = countingUsageCalls();
    const keeping = new ContainerdStats({ api: fresh.api });
    const first = (await keeping.containerStats([c.id], refs)).get(c.id)?.writableLayer;
    assert.equal(fresh.usageCalls(), 1);
    writeFileSync(join(rootfs(c.id), 'go'), '');
    await waitForMarker(c.id, 'written');
    const second = (await keeping.containerStats([c.id], refs)).get(c.id)?.writableLayer;
    assert.equal(fresh.usageCalls(), 1, 'within the refresh interval, no walk of the layer');
    assert.deepEqual(second, first);

    const stale = countingUsageCalls();
    const refreshing = new ContainerdStats({ api: stale.api, usageRefreshMs: 0 });
    const before = (await refreshing.containerStats([c.id], refs)).get(c.id)?.writableLayer;
    const answered = (await refreshing.containerStats([c.id], refs)).get(c.id)?.writableLayer;
    assert.deepEqual(answered, before, 'an old figure is answered at once');
    await until('the background refresh', async () => stale.usageCalls() >= 2, 30_000);
    await removeAll(c.id);
  });

  it('is undefined for a snapshot that does not exist, and left out of a sample without a snapshot ref', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.equal(await stats.writableLayer('overlayfs', newId('no-snapshot')), undefined);
    const c = await startContainer('no-ref', 'sleep 1000 & wait');
    const missing: SnapshotRef = { snapshotter: 'overlayfs', key: newId('no-snapshot') };
    const withMissing = await stats.containerStats([c.id], { snapshots: new Map([[c.id, missing]]) });
    assert.ok(withMissing.has(c.id));
    assert.equal(withMissing.get(c.id)?.writableLayer, undefined);
    assert.equal((await stats.containerStats([c.id])).get(c.id)?.writableLayer, undefined);
    await removeAll(c.id);
  });

  it('leaves no task, container or snapshot behind', async () => {
    const { tasks: list } = await unaryCall<{ tasks: unknown[] }>(api.tasks, 'List', { filter: '' });
    assert.deepEqual(list, []);
    const { containers } = await unaryCall<{ containers: unknown[] }>(api.containers, 'List', { filters: [] });
    assert.deepEqual(containers, []);
    const pages = await collectStream<{ info: Array<{ name: string; kind: string }> }>(api.snapshots, 'List', {
      snapshotter: 'overlayfs',
      filters: [],
    });
    assert.deepEqual(
      pages.flatMap((p) => p.info).filter((s) => s.kind !== 'COMMITTED'),
      [],
    );
    assert.deepEqual(readdirSync(join(dirname(containerd.address), 'runc', NAMESPACE)), []);
  });
});

/** Unique per run: cgroup paths are machine-wide, and another test file may run beside this one. */
const newId = (name: string): string => `stats-${process.pid}-${name}`;

/** Where the shim mounts a running task's rootfs, so the test can drop a file in or look for one. */
const rootfs = (id: string): string => join(containerd.state, 'io.containerd.runtime.v2.task', NAMESPACE, id, 'rootfs');

async function createContainer(
  name: string,
  args: string[],
  memoryLimit?: number,
): Promise<{ id: string; snapshot: SnapshotRef }> {
  const id = newId(name);
  created.push(id);
  const snapshot = await createTestContainer(api, runtime, id, args, {
    hostname: 'stats-test',
    ...(memoryLimit ? { memoryLimit } : {}),
  });
  return { id, snapshot };
}

async function startContainer(
  name: string,
  script: string,
  memoryLimit?: number,
): Promise<{ id: string; snapshot: SnapshotRef }> {
  const c = await createContainer(name, ['sh', '-c', script], memoryLimit);
  await tasks.start(c.id, { terminal: false });
  return c;
}

/** Waits until the container's script has created `/<marker>`; fails at once if the task stopped first. */
async function waitForMarker(id: string, marker: string): Promise<void> {
  const deadline = Date.now() + MARKER_WAIT_MS;
  while (!existsSync(join(rootfs(id), marker))) {
    const state = await tasks.state(id);
    if (state?.status !== 'RUNNING') throw new Error(`${id} is ${JSON.stringify(state)} before /${marker}`);
    if (Date.now() > deadline) throw new Error(`${id} did not create /${marker} within ${MARKER_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function one(id: string): Promise<ContainerStatsSample> {
  const sample = (await stats.containerStats([id])).get(id);
  assert.ok(sample, `no stats for ${id}`);
  return sample;
}

async function removeAll(id: string): Promise<void> {
  await tasks.kill(id, 'SIGKILL', { all: true });
  await tasks.wait(id).catch(() => undefined);
  await tasks.delete(id);
  await runtime.deleteContainer(id);
  await runtime.removeSnapshot(id, 'overlayfs');
}

/** The shared api with its snapshots client counting Usage calls. */
function countingUsageCalls(): { api: ContainerdApi; usageCalls: () => number } {
  let calls = 0;
  const counted = new Proxy(api.snapshots, {
    get(target, property, receiver) {
      if (property === 'Usage') calls += 1;
      return Reflect.get(target, property, receiver);
    },
  });
  return { api: { ...api, snapshots: counted }, usageCalls: () => calls };
}

/** The shared api with its tasks client counting Metrics calls. */
function countingMetricsCalls(): { api: ContainerdApi; metricsCalls: () => number } {
  let calls = 0;
  const counted = new Proxy(api.tasks, {
    get(target, property, receiver) {
      if (property === 'Metrics') calls += 1;
      return Reflect.get(target, property, receiver);
    },
  });
  return { api: { ...api, tasks: counted }, metricsCalls: () => calls };
}
