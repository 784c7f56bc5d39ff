import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import {
  ContainerdTaskEvents,
  taskEventFilters,
  TASK_EXIT_TOPIC,
  TASK_OOM_TOPIC,
  type TaskEvent,
} from '../../src/adapters/containerd/containerd-task-events.js';
import { ContainerdTasks, taskState } from '../../src/adapters/containerd/containerd-tasks.js';
import { RuntimeUnavailableError } from '../../src/domain/errors.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { createTestContainer, tearDownRuncTests } from '../support/runc-containers.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage } from '../support/oci-image.js';

const NAMESPACE = 'cri-ledger-task-events-test';
const OTHER_NAMESPACE = 'cri-ledger-task-events-other';
// RFC 3339 with nine fraction digits, in UTC.
const EXITED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/;
const TEST_TIMEOUT_MS = 60_000;

let containerd: PrivateContainerd;
let api: ContainerdApi;
let runtime: ContainerdRuntime;
let tasks: ContainerdTasks;
let workDir: string;
let events: ContainerdTaskEvents;
let recorded: Recorder;
const logs: LogLine[] = [];
const created: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-task-events-'));
  containerd = await startContainerd();
  api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  await importTestImage(containerd.address, NAMESPACE, await buildTestImage(BUSYBOX_IMAGE, workDir));
  runtime = new ContainerdRuntime({ api });
  tasks = new ContainerdTasks({ api, runcRoot: join(dirname(containerd.address), 'runc') });
  events = new ContainerdTaskEvents({ api, logger: captureLogger(logs), backoff: { initialMs: 50, maxMs: 500 } });
  events.start();
  recorded = record(events);
  await recorded.waitFor((e) => e.kind === 'subscribed');
});

after(async () => {
  await events?.stop();
  await tearDownRuncTests({ created, tasks, runtime, api, workDir, containerd });
});

describe('ContainerdTaskEvents', () => {
  it('passes the exits and OOMs of its own namespace only, decoded field by field', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const other = connectContainerd({ address: containerd.address, namespace: OTHER_NAMESPACE });
    const exit = (containerId: string, id: string): Buffer =>
      message([
        str(1, containerId),
        str(2, id),
        uint(3, 4242),
        uint(4, 255),
        sub(5, [uint(1, 1767225600), uint(2, 123456789)]),
      ]);
    const publish = (client: ContainerdApi, topic: string, typeUrl: string, value: Buffer): Promise<unknown> =>
      unaryCall(client.events, 'Publish', { topic, event: { type_url: typeUrl, value } });
    try {
      // What the filters must hold back: another namespace, and another topic.
      await publish(
        other,
        TASK_EXIT_TOPIC,
        'containerd.events.TaskExit',
        exit('fake-other-namespace', 'fake-other-namespace'),
      );
      await publish(api, '/tasks/start', 'containerd.events.TaskExit', exit('fake-other-topic', 'fake-other-topic'));
      await publish(api, TASK_OOM_TOPIC, 'containerd.events.TaskOOM', message([str(1, 'fake-oom')]));
      await publish(api, TASK_EXIT_TOPIC, 'containerd.events.TaskExit', exit('fake-init', 'fake-init'));
      await publish(api, TASK_EXIT_TOPIC, 'containerd.events.TaskExit', exit('fake-init', 'fake-exec'));
    } finally {
      other.close();
    }
    await recorded.waitFor((e) => e.kind === 'exit' && e.execId === 'fake-exec');
    // One subscriber gets events in publish order, so a leak would show up before the last.
    const fakes = recorded.seen.filter((e) => 'containerId' in e && e.containerId.startsWith('fake-'));
    const exited = {
      kind: 'exit',
      containerId: 'fake-init',
      pid: 4242,
      exitCode: 255,
      exitedAt: '2026-01-01T00:00:00.123456789Z',
    };
    assert.deepEqual(fakes, [
      { kind: 'oom', containerId: 'fake-oom' },
      { ...exited, execId: '' },
      { ...exited, execId: 'fake-exec' },
    ]);
  });

  it('uses filters containerd 1.6 parses, with every value double-quoted', () => {
    // `topic==/tasks/exit` would not do: containerd reads an unquoted `/` as a /quoted/ value.
    assert.deepEqual(taskEventFilters('ns'), [
      'namespace=="ns",topic=="/tasks/exit"',
      'namespace=="ns",topic=="/tasks/oom"',
    ]);
  });

  it('reports a real task exit with its container id, pid and exit status, as Tasks.Get does', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const id = await createContainer('exit3', ['sh', '-c', 'exit 3']);
    const { pid } = await tasks.start(id, { terminal: false });
    const exit = await recorded.waitFor((e) => e.kind === 'exit' && e.containerId === id);
    assert.ok(exit.kind === 'exit');
    assert.deepEqual(
      { ...exit, exitedAt: '' },
      { kind: 'exit', containerId: id, execId: '', pid, exitCode: 3, exitedAt: '' },
    );
    assert.match(exit.exitedAt, EXITED_AT);
    assert.ok(Math.abs(Date.parse(exit.exitedAt) - Date.now()) < 60_000, exit.exitedAt);
    assert.deepEqual(await taskState(api, id), { status: 'STOPPED', pid, exitCode: 3, exitedAt: exit.exitedAt });
    await removeTask(id);
  });

  it('reports 137 for a task killed with SIGKILL', { timeout: TEST_TIMEOUT_MS }, async () => {
    const id = await createContainer('sigkill', ['sleep', '1000']);
    const { pid } = await tasks.start(id, { terminal: false });
    assert.deepEqual(await taskState(api, id), { status: 'RUNNING', pid });
    await tasks.kill(id, 'SIGKILL');
    const exit = await recorded.waitFor((e) => e.kind === 'exit' && e.containerId === id);
    assert.ok(exit.kind === 'exit');
    assert.equal(exit.pid, pid);
    assert.equal(exit.exitCode, 137);
    await removeTask(id);
  });

  it('subscribes again after containerd restarts; taskState shows the exit it may have missed', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const id = await createContainer('missed', ['sleep', '1000']);
    const { pid } = await tasks.start(id, { terminal: false });
    const from = recorded.seen.length;
    // The shim outlives containerd, so it reaps the process and keeps its exit for Tasks.Get.
    await containerd.restart(() => {
      process.kill(pid, 'SIGKILL');
    });
    const back = await recorded.waitFor((e) => e.kind === 'resubscribed', from);
    assert.ok(back.kind === 'resubscribed' && back.downForMs > 0, JSON.stringify(back));
    assert.ok(
      logs.some((l) => l.level === 40 && l.msg.includes('broke') && l.wasLive === true),
      'the break is logged at warn',
    );

    const state = await taskState(api, id);
    assert.deepEqual({ ...state, exitedAt: '' }, { status: 'STOPPED', pid, exitCode: 137, exitedAt: '' });
    assert.match(state?.exitedAt ?? '', EXITED_AT);
    await removeTask(id);

    // The new subscription delivers.
    const next = await createContainer('after-restart', ['sh', '-c', 'exit 5']);
    const started = await tasks.start(next, { terminal: false });
    const exit = await recorded.waitFor((e) => e.kind === 'exit' && e.containerId === next, from);
    assert.deepEqual(exit, {
      kind: 'exit',
      containerId: next,
      execId: '',
      pid: started.pid,
      exitCode: 5,
      exitedAt: (await taskState(api, next))?.exitedAt,
    });
    await removeTask(next);
  });

  it('reports an OOM kill in a container with a memory limit', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Doubling a shell variable reaches the 32 MiB limit in about 22 steps.
    const id = await createContainer(
      'oom',
      ['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'],
      32 * 1024 * 1024,
    );
    await tasks.start(id, { terminal: false });
    await recorded.waitFor((e) => e.kind === 'oom' && e.containerId === id);
    const exit = await recorded.waitFor((e) => e.kind === 'exit' && e.containerId === id);
    assert.ok(exit.kind === 'exit');
    assert.equal(exit.exitCode, 137);
    await removeTask(id);
  });

  it('stop() cancels a live subscription, ends the iteration and leaves no timer behind', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const timersBefore = activeTimers();
    const second = new ContainerdTaskEvents({ api });
    second.start();
    const rec = record(second);
    await rec.waitFor((e) => e.kind === 'subscribed');
    const began = Date.now();
    await second.stop();
    await rec.done;
    // Seconds: a stop that waited for the stream to end by itself would hang, not be slow.
    assert.ok(Date.now() - began < 10_000, `stop took ${Date.now() - began} ms`);
    assert.deepEqual(rec.seen, [{ kind: 'subscribed' }]);
    assert.equal(activeTimers(), timersBefore);
    assert.throws(() => second.start(), /once/);
  });

  it('retries with a bounded backoff while containerd is unreachable, until stop()', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const gone = connectContainerd({ address: join(workDir, 'no-such-containerd.sock'), namespace: NAMESPACE });
    const lines: LogLine[] = [];
    const timersBefore = activeTimers();
    const offline = new ContainerdTaskEvents({
      api: gone,
      logger: captureLogger(lines),
      backoff: { initialMs: 10, maxMs: 40 },
    });
    try {
      offline.start();
      const rec = record(offline);
      for (let i = 0; i < 200 && lines.length < 5; i++) await new Promise((r) => setTimeout(r, 20));
      await offline.stop();
      await rec.done;
      assert.deepEqual(rec.seen, []);
      assert.ok(lines.length >= 5, `${lines.length} attempts logged`);
      assert.ok(lines.every((l) => l.level === 40 && l.wasLive === false));
      assert.deepEqual(
        lines.slice(0, 5).map((l) => l.retryInMs),
        [10, 20, 40, 40, 40],
      );
      assert.equal(activeTimers(), timersBefore);
    } finally {
      gone.close();
    }
  });

  it('rejects a backoff whose maximum is below its start', () => {
    assert.throws(() => new ContainerdTaskEvents({ api, backoff: { initialMs: 100, maxMs: 10 } }), /backoff.maxMs/);
  });
});

describe('taskState', () => {
  it('is undefined for a container without a task', async () => {
    assert.equal(await taskState(api, `events-${process.pid}-absent`), undefined);
  });

  it('fails with RuntimeUnavailableError when containerd does not answer', async () => {
    const gone = connectContainerd({ address: join(workDir, 'no-such-containerd.sock'), namespace: NAMESPACE });
    try {
      await assert.rejects(taskState(gone, 'x'), RuntimeUnavailableError);
    } finally {
      gone.close();
    }
  });
});

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function captureLogger(lines: LogLine[]): Logger {
  return pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
}

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

interface Recorder {
  seen: TaskEvent[];
  /** The first event from index `from` on that matches. */
  waitFor(match: (e: TaskEvent) => boolean, from?: number): Promise<TaskEvent>;
  /** Resolves when the iteration ends. */
  done: Promise<void>;
}

/** Reads `source` in the background, so tests can wait for an event whatever came before. */
function record(source: ContainerdTaskEvents): Recorder {
  const seen: TaskEvent[] = [];
  let notify = (): void => undefined;
  const done = (async () => {
    for await (const e of source) {
      seen.push(e);
      notify();
    }
  })();
  async function waitFor(match: (e: TaskEvent) => boolean, from = 0): Promise<TaskEvent> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const found = seen.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event; saw ${JSON.stringify(seen)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        notify = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  return { seen, waitFor, done };
}

/** Unique per run: cgroup paths are machine-wide. */
const newId = (name: string): string => `events-${process.pid}-${name}`;

async function createContainer(name: string, args: string[], memoryLimit?: number): Promise<string> {
  const id = newId(name);
  created.push(id);
  await createTestContainer(api, runtime, id, args, {
    hostname: 'task-events-test',
    ...(memoryLimit ? { memoryLimit } : {}),
  });
  return id;
}

async function removeTask(id: string): Promise<void> {
  await tasks.delete(id);
  await runtime.deleteContainer(id);
  await runtime.removeSnapshot(id, 'overlayfs');
}

// Protobuf written out by hand, so the decoder is checked against the field numbers, not itself.
function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}
const str = (field: number, value: string): Buffer => sub(field, [Buffer.from(value, 'utf8')]);
const uint = (field: number, value: number): Buffer => Buffer.from([...varint(field << 3), ...varint(value)]);
function sub(field: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(body.length)]), body]);
}
const message = (parts: Buffer[]): Buffer => Buffer.concat(parts);
