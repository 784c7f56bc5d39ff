import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * A container's whole life over the CRI socket, on a private containerd with real runc
 * tasks: start, logs in the CRI format, rotation, exits (code, OOM), stop with a
 * timeout, exec, stats, removal, a restart of cri-ledger, and kubelet's RPC sequence.
 * Waiting is done by polling a condition with a generous deadline; nothing asserts on
 * how long something took.
 */

/** Polls `check` until it returns a value (not undefined); fails after `timeoutMs` naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const CRI_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (stdout|stderr) (P|F) (.*)$/;

interface StatusReply {
  status: {
    state: string;
    exitCode: number;
    reason: string;
    finishedAt: string;
    startedAt: string;
    logPath: string;
    resources: { linux: { memoryLimitInBytes: string } } | null;
  };
  info: Record<string, string>;
}

describe('the container lifecycle over the CRI socket, on a private containerd', () => {
  let h: CriHarness;
  let logDir: string;
  let podId = '';
  const podConfig = {
    metadata: { name: 'life', uid: 'uid-life', namespace: 'default', attempt: 0 },
    logDirectory: '',
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const status = (containerId: string, verbose = false) =>
    call<StatusReply>('containerStatus', { containerId, verbose });
  const create = async (name: string, args: string[], extra: Record<string, unknown> = {}) =>
    (
      await call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: podConfig,
        config: {
          metadata: { name, attempt: 0 },
          image: { image: 'busybox' },
          command: ['sh', '-c'],
          args,
          logPath: `${name}.log`,
          ...extra,
        },
      })
    ).containerId;
  const exited = (id: string) =>
    until(`${id} to exit`, async () =>
      (await status(id)).status.state === 'CONTAINER_EXITED' ? status(id) : undefined,
    );

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-life-' });
    logDir = join(h.root, 'pod-logs');
    await mkdir(logDir);
    podConfig.logDirectory = logDir;
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
  });
  after(() => h?.cleanup());

  it('starts a container and writes its stdout and stderr to its log in the CRI format, long lines split', async () => {
    const long = 'x'.repeat(20_000);
    const id = await create('writer', [`echo out; echo err >&2; echo ${long}; sleep 3600`]);
    await call('startContainer', { containerId: id });
    const s = await status(id);
    assert.equal(s.status.state, 'CONTAINER_RUNNING');
    assert.notEqual(s.status.startedAt, '0');
    const text = await until('three log records', async () => {
      const t = await readFile(join(logDir, 'writer.log'), 'utf8').catch(() => '');
      return t.split('\n').filter(Boolean).length >= 4 ? t : undefined;
    });
    const records = text
      .split('\n')
      .filter(Boolean)
      .map((l) => CRI_LINE.exec(l));
    assert.ok(
      records.every((r) => r !== null),
      `every line is a CRI record:\n${text.slice(0, 500)}`,
    );
    const by = (stream: string) =>
      records
        .filter((r) => r![2] === stream)
        .map((r) => [r![3], r![4]!.length > 50 ? `${r![4]!.length} bytes` : r![4]]);
    assert.deepEqual(by('stderr'), [['F', 'err']]);
    assert.deepEqual(by('stdout'), [
      ['F', 'out'],
      ['P', '16384 bytes'],
      ['F', `${20_000 - 16_384} bytes`],
    ]);
  });

  it('rotates the log with ReopenContainerLog without losing or doubling a line', async () => {
    const id = await create('counter', ['i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.02; done']);
    await call('startContainer', { containerId: id });
    const path = join(logDir, 'counter.log');
    const lines = async (p: string) =>
      (await readFile(p, 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map((l) => CRI_LINE.exec(l)![4]!);
    await until('some lines', async () => ((await lines(path)).length >= 5 ? true : undefined));
    for (let n = 1; n <= 3; n++) {
      await rename(path, `${path}.${n}`);
      await call('reopenContainerLog', { containerId: id });
      await until(`lines in the reopened log ${n}`, async () => ((await lines(path)).length >= 5 ? true : undefined));
    }
    await call('stopContainer', { containerId: id, timeout: 0 });
    const all = [
      ...(await lines(`${path}.1`)),
      ...(await lines(`${path}.2`)),
      ...(await lines(`${path}.3`)),
      ...(await lines(path)),
    ];
    assert.deepEqual(
      all,
      all.map((_l, i) => `line ${i}`),
    );
    const stopped = await call<ServiceError | object>('reopenContainerLog', { containerId: id }).catch(
      (e: ServiceError) => e,
    );
    assert.equal((stopped as ServiceError).code, Status.FAILED_PRECONDITION);
  });

  it('records an exit with its code, reason Error and finish time', async () => {
    const id = await create('three', ['exit 3']);
    await call('startContainer', { containerId: id });
    const s = await exited(id);
    assert.equal(s!.status.exitCode, 3);
    assert.equal(s!.status.reason, 'Error');
    assert.ok(BigInt(s!.status.finishedAt) >= BigInt(s!.status.startedAt));
    const zero = await create('zero', ['exit 0']);
    await call('startContainer', { containerId: zero });
    assert.equal((await exited(zero))!.status.reason, 'Completed');
  });

  it('records OOMKilled for a container past its memory limit', async () => {
    const id = await create('hog', ['x=$(head -c 200000000 /dev/zero | tr "\\0" a); sleep 5'], {
      linux: { resources: { memoryLimitInBytes: 16 * 1024 * 1024 } },
    });
    assert.equal((await status(id)).status.resources?.linux.memoryLimitInBytes, String(16 * 1024 * 1024));
    await call('startContainer', { containerId: id });
    const s = await exited(id);
    assert.equal(s!.status.reason, 'OOMKilled');
    assert.equal(s!.status.exitCode, 137);
  });

  it('kills a container that ignores SIGTERM after the timeout, and stop and remove are idempotent', async () => {
    const id = await create('stubborn', ['trap "" TERM; while true; do sleep 1; done']);
    await call('startContainer', { containerId: id });
    await call('stopContainer', { containerId: id, timeout: 1 });
    const s = await status(id);
    assert.equal(s.status.state, 'CONTAINER_EXITED');
    assert.equal(s.status.exitCode, 137);
    const events = await runCli(['events', '--socket', h.socket, '--stream', `container-${id}`, '--json']);
    const stopped = events.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; data: { killed?: boolean; signal?: string } })
      .find((e) => e.type === 'ContainerStopped');
    assert.deepEqual([stopped?.data.signal, stopped?.data.killed], ['SIGTERM', true]);
    await call('stopContainer', { containerId: id, timeout: 1 });
    await call('removeContainer', { containerId: id });
    await call('removeContainer', { containerId: id });
    const gone = await status(id).catch((e: ServiceError) => e);
    assert.equal((gone as ServiceError).code, Status.NOT_FOUND);
  });

  it('runs ExecSync: output and exit code, a timeout as DEADLINE_EXCEEDED with the process gone, and an audit event', async () => {
    const id = await create('exec', ['sleep 3600'], { envs: [{ key: 'GREETING', value: 'hi' }] });
    await call('startContainer', { containerId: id });
    const r = await call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>('execSync', {
      containerId: id,
      cmd: ['sh', '-c', 'echo $GREETING; echo oops >&2; exit 4'],
      timeout: 10,
    });
    assert.deepEqual([r.stdout.toString(), r.stderr.toString(), r.exitCode], ['hi\n', 'oops\n', 4]);
    const timedOut = await call('execSync', { containerId: id, cmd: ['sleep', '30'], timeout: 1 }).catch(
      (e: ServiceError) => e,
    );
    assert.equal((timedOut as ServiceError).code, Status.DEADLINE_EXCEEDED);
    const pids = await unaryCall<{ processes: unknown[] }>(h.api.tasks, 'ListPids', { container_id: id });
    assert.equal(pids.processes.length, 1, 'only the container process is left');
    const events = await runCli([
      'events',
      '--socket',
      h.socket,
      '--stream',
      `container-${id}`,
      '--type',
      'ExecRan',
      '--json',
    ]);
    const execs = events.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { data: { cmd: string[]; exitCode: number; timedOut: boolean } }).data);
    assert.deepEqual(
      execs.map((e) => [e.cmd[0], e.exitCode, e.timedOut]),
      [
        ['sh', 4, false],
        ['sleep', -1, true],
      ],
    );
    const notRunning = await create('idle', ['true']);
    const refused = await call('execSync', { containerId: notRunning, cmd: ['true'], timeout: 1 }).catch(
      (e: ServiceError) => e,
    );
    assert.equal((refused as ServiceError).code, Status.FAILED_PRECONDITION);
  });

  it('reports container and pod stats (memory above zero, CPU that does not go down, the writable layer) and updates resources', async () => {
    const id = await create('busy', [
      'x=$(head -c 4000000 /dev/zero | tr "\\0" a); i=0; while true; do i=$((i+1)); done',
    ]);
    await call('startContainer', { containerId: id });
    type Stats = {
      stats: {
        cpu: { usageCoreNanoSeconds: { value: string } };
        memory: { workingSetBytes: { value: string } };
        writableLayer: { usedBytes: { value: string } };
      };
    };
    const first = await until('a CPU sample above zero', async () => {
      const s = await call<Stats>('containerStats', { containerId: id });
      return BigInt(s.stats.cpu?.usageCoreNanoSeconds.value ?? '0') > 0n ? s : undefined;
    });
    assert.ok(BigInt(first.stats.memory.workingSetBytes.value) > 0n);
    assert.ok(first.stats.writableLayer);
    const second = await until('CPU to advance', async () => {
      const s = await call<Stats>('containerStats', { containerId: id });
      return BigInt(s.stats.cpu.usageCoreNanoSeconds.value) > BigInt(first.stats.cpu.usageCoreNanoSeconds.value)
        ? s
        : undefined;
    });
    assert.ok(second);
    const list = await call<{ stats: Array<{ attributes: { id: string } }> }>('listContainerStats', {
      filter: { id: id.slice(0, 12), podSandboxId: '', labelSelector: {} },
    });
    assert.deepEqual(
      list.stats.map((s) => s.attributes.id),
      [id],
    );
    type PodStats = {
      stats: {
        attributes: { id: string };
        linux: { cpu: { usageCoreNanoSeconds: { value: string } }; containers: Array<{ attributes: { id: string } }> };
      };
    };
    const pod = await call<PodStats>('podSandboxStats', { podSandboxId: podId });
    assert.equal(pod.stats.attributes.id, podId);
    assert.ok(
      BigInt(pod.stats.linux.cpu.usageCoreNanoSeconds.value) >= BigInt(second.stats.cpu.usageCoreNanoSeconds.value),
      'the pod uses at least what its busy container does',
    );
    assert.ok(pod.stats.linux.containers.some((c) => c.attributes.id === id));
    const pods = await call<{ stats: Array<{ attributes: { id: string } }> }>('listPodSandboxStats', {
      filter: { id: podId.slice(0, 10), labelSelector: {} },
    });
    assert.deepEqual(
      pods.stats.map((p) => p.attributes.id),
      [podId],
    );

    // UpdateContainerResources: the running task's cgroup gets the new memory limit, and status shows it.
    const limit = String(256 * 1024 * 1024);
    await call('updateContainerResources', { containerId: id, linux: { memoryLimitInBytes: limit, cpuShares: '512' } });
    const cgroup = await call<{ stdout: Buffer }>('execSync', {
      containerId: id,
      cmd: ['cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes'],
      timeout: 5,
    });
    assert.equal(cgroup.stdout.toString().trim(), limit);
    assert.equal((await status(id)).status.resources?.linux.memoryLimitInBytes, limit);
    await call('stopContainer', { containerId: id, timeout: 0 });
    const refused = await call('updateContainerResources', {
      containerId: id,
      linux: { memoryLimitInBytes: limit },
    }).catch((e: ServiceError) => e);
    assert.equal((refused as ServiceError).code, Status.FAILED_PRECONDITION);
  });

  it('keeps every status across a restart of cri-ledger, and records an exit that happened while it was down', async () => {
    const created = await create('r-created', ['true']);
    const running = await create('r-running', ['sleep 3600']);
    const dies = await create('r-dies', ['trap "exit 5" USR1; while true; do sleep 0.1; done']);
    const done = await create('r-done', ['exit 2']);
    for (const id of [running, dies, done]) await call('startContainer', { containerId: id });
    await exited(done);
    const before = new Map<string, StatusReply['status']>();
    for (const id of [created, running, done]) before.set(id, (await status(id)).status);
    await h.serve().stop();
    // While the service is down, one container exits.
    await unaryCall(h.api.tasks, 'Kill', { container_id: dies, exec_id: '', signal: 10, all: false });
    await until('the task to stop while cri-ledger is down', async () => {
      const t = await unaryCall<{ process: { status: string } }>(h.api.tasks, 'Get', {
        container_id: dies,
        exec_id: '',
      });
      return t.process.status === 'STOPPED' ? true : undefined;
    });
    await h.restart();
    for (const [id, s] of before)
      assert.deepEqual((await status(id)).status, s, `status of ${id} survives the restart`);
    const d = await exited(dies);
    assert.deepEqual([d!.status.exitCode, d!.status.reason], [5, 'Error']);
    // Stop and remove still work on what the previous process started.
    await call('stopContainer', { containerId: running, timeout: 0 });
    for (const id of [created, running, dies, done]) await call('removeContainer', { containerId: id });
  });

  it("replays kubelet's sequence for one pod, and leaves nothing in containerd, snapshots or on disk", async () => {
    const pod = { ...podConfig, metadata: { name: 'kubelet', uid: 'uid-kubelet', namespace: 'default', attempt: 0 } };
    const sandboxId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    assert.equal(
      (await call<{ status: { state: string } }>('podSandboxStatus', { podSandboxId: sandboxId })).status.state,
      'SANDBOX_READY',
    );
    const config = {
      metadata: { name: 'app', attempt: 0 },
      image: { image: 'busybox' },
      command: ['sleep', '3600'],
      logPath: 'kubelet-app.log',
    };
    const containerId = (
      await call<{ containerId: string }>('createContainer', { podSandboxId: sandboxId, sandboxConfig: pod, config })
    ).containerId;
    await call('startContainer', { containerId });
    const listed = await call<{ containers: Array<{ id: string; state: string }> }>('listContainers', {
      filter: { podSandboxId: sandboxId },
    });
    assert.deepEqual(
      listed.containers.map((c) => [c.id, c.state]),
      [[containerId, 'CONTAINER_RUNNING']],
    );
    assert.equal((await status(containerId)).status.state, 'CONTAINER_RUNNING');
    const probe = await call<{ exitCode: number }>('execSync', { containerId, cmd: ['true'], timeout: 5 });
    assert.equal(probe.exitCode, 0);
    await call('stopContainer', { containerId, timeout: 2 });
    await call('stopPodSandbox', { podSandboxId: sandboxId });
    await call('removeContainer', { containerId });
    await call('removePodSandbox', { podSandboxId: sandboxId });
    // The same names again: both are free.
    const again = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    const againContainer = (
      await call<{ containerId: string }>('createContainer', { podSandboxId: again, sandboxConfig: pod, config })
    ).containerId;
    await call('startContainer', { containerId: againContainer });
    // StopPodSandbox stops the pod's running containers first; RemovePodSandbox removes them.
    await call('stopPodSandbox', { podSandboxId: again });
    assert.equal((await status(againContainer)).status.state, 'CONTAINER_EXITED');
    await call('removePodSandbox', { podSandboxId: again });
    for (const id of [containerId, againContainer, sandboxId, again]) {
      const c = await unaryCall(h.api.containers, 'Get', { id }).catch((e: ServiceError) => e);
      assert.equal((c as ServiceError).code, Status.NOT_FOUND);
    }
    const snapshots = (
      await collectStream<{ info: Array<{ name: string }> }>(h.api.snapshots, 'List', { snapshotter: 'overlayfs' })
    )
      .flatMap((m) => m.info)
      .map((i) => i.name);
    for (const id of [containerId, againContainer]) {
      assert.equal(snapshots.includes(id), false);
      assert.equal((await readdir(join(h.root, 'containers')).catch((): string[] => [])).includes(id), false);
      assert.equal((await readdir(join(h.root, 'state', 'containers')).catch((): string[] => [])).includes(id), false);
    }
  });
});
