import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { UnclaimedResultTimer } from '../../src/adapters/cri/unclaimed-results.js';
import { createContainer, type CreateContainerDeps } from '../../src/commands/create-container.js';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import type { Caller } from '../../src/commands/ports.js';
import { containerStream } from '../../src/domain/ids.js';
import {
  FakeFiles,
  FakeImages,
  FakeNetwork,
  FakePodFiles,
  FakeRuntime,
  FakeSpecs,
  FakeTasks,
} from '../support/fake-runtime.js';
import { digest, ev, hexId, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

/*
 * The unclaimed-result timer: armed from the projections (so after a restart from the
 * log alone) and after each committed ResultUndelivered; it removes what is due, when
 * it is due, and nothing sooner.
 */

const pod = sandbox('pod-timer', 'timer_default_uid-t_0');
const TIMEOUT_MS = 300;

async function node(log: MemoryEventLog, runtime: FakeRuntime, files: FakeFiles) {
  const ledger = await Ledger.load(log);
  const names = new NameReservations(ledger.projections.containerNames);
  const deps: CreateContainerDeps = { ledger, names, images: new FakeImages(), runtime, files, specs: new FakeSpecs() };
  const timer = new UnclaimedResultTimer({
    ledger,
    unclaimedTimeoutMs: TIMEOUT_MS,
    logger: pino({ level: 'silent' }),
    retryMs: 50,
    reap: {
      containers: { ledger, names, runtime, files },
      sandboxes: {
        ledger,
        names: new NameReservations(ledger.projections.sandboxNames),
        runtime,
        tasks: new FakeTasks(),
        network: new FakeNetwork(),
        files: new FakePodFiles(),
      },
    },
  });
  return { ledger, deps, timer };
}

/** A caller whose deadline passed just now. */
const gone = (): Caller => {
  const at = new Date().toISOString();
  return { deadline: at, gaveUp: () => ({ at, reason: 'deadline' }) };
};

const create = (deps: CreateContainerDeps, label: string) =>
  createContainer(deps, {
    containerId: hexId(`timer-${label}`),
    requestDigest: digest(label),
    correlationId: `req-${label}`,
    now: new Date().toISOString(),
    request: {
      podSandboxId: pod.id,
      config: { metadata: { name: label, attempt: 0 }, image: { image: 'busybox' } },
      sandboxConfig: {},
    },
    caller: gone(),
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the unclaimed-result timer', () => {
  it('removes an undelivered result once its time has passed, and not before', async () => {
    const log = new MemoryEventLog();
    const runtime = new FakeRuntime();
    const files = new FakeFiles();
    const n = await node(log, runtime, files);
    await n.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    n.timer.start();
    try {
      const id = await create(n.deps, 'one');
      await sleep(TIMEOUT_MS / 3);
      assert.ok(runtime.containers.has(id), 'still there before the timeout');
      await sleep(TIMEOUT_MS + 200);
      assert.equal(runtime.containers.size, 0);
      assert.equal((await log.readStream(containerStream(id))).at(-1)?.type, 'ContainerRemoved');
    } finally {
      await n.timer.stop();
    }
  });

  it('is armed from the log at start: a result left undelivered before a restart goes too', async () => {
    const log = new MemoryEventLog();
    const runtime = new FakeRuntime();
    const files = new FakeFiles();
    const first = await node(log, runtime, files);
    await first.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    const id = await create(first.deps, 'two');
    // The first process never started its timer (it "died"); the next one starts from the log.
    const second = await node(log, runtime, files);
    second.timer.start();
    try {
      await sleep(TIMEOUT_MS + 300);
      assert.equal(runtime.containers.has(id), false);
      assert.equal(second.ledger.projections.undelivered.size, 0);
    } finally {
      await second.timer.stop();
    }
  });

  it('tries again when an undo fails', async () => {
    const log = new MemoryEventLog();
    const runtime = new FakeRuntime();
    const files = new FakeFiles();
    const n = await node(log, runtime, files);
    await n.ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    runtime.failOn('deleteContainer');
    n.timer.start();
    try {
      const id = await create(n.deps, 'three');
      await sleep(TIMEOUT_MS + 300);
      assert.equal(runtime.containers.has(id), false, 'removed at the second attempt');
    } finally {
      await n.timer.stop();
    }
  });
});
