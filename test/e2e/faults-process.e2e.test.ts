import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * Faults of the service process itself: SIGKILL in the middle of many concurrent
 * CreateContainer calls (every acknowledged one is in the log after the restart, and
 * verify is clean); a second `serve` on the same root (it fails fast and leaves the
 * first one's socket alone); and a step held for 30 s (the read RPCs are answered while
 * it is held: nothing blocks the event loop while a saga waits).
 */

/*
 * The held step lasts far longer than any answer may take, and each answer's bound is
 * seconds: what is checked is that reads are answered while a saga waits, not how fast
 * (latency figures are bench/'s: `npm run bench -- cri`).
 */
const HELD_STEP_MS = 30_000;
const ANSWER_BOUND_MS = 5_000;
const PROBE_ROUNDS = 3;

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} was not answered within ${ms} ms while the step was held`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('the service process under faults', () => {
  let h: CriHarness;
  let podId = '';
  const pod = {
    metadata: { name: 'proc', uid: 'uid-proc', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const request = (name: string) => ({
    podSandboxId: podId,
    sandboxConfig: pod,
    config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
  });
  const serveArgs = (socket: string) => [
    'serve',
    '--root',
    h.root,
    '--state-dir',
    join(h.root, 'state'),
    '--socket',
    socket,
    '--containerd-address',
    h.containerd.address,
    '--log-level',
    'warn',
    '--node',
    'test-node',
  ];

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const inFlight = async (): Promise<number> => {
    const r = await runCli(['status', '--socket', h.socket, '--json']);
    return (JSON.parse(r.stdout) as { counts: { operationsInFlight: number } }).counts.operationsInFlight;
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-proc-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(() => h?.cleanup());

  it('keeps every acknowledged CreateContainer after a SIGKILL in the middle of many concurrent ones, and verify is clean', async (t) => {
    const CALLS = 400;
    const CONCURRENCY = 16;
    const KILL_AFTER_ACKS = 120;
    const acked: Array<{ name: string; id: string }> = [];
    let failed = 0;
    let next = 0;
    let killing: Promise<unknown> | undefined;
    const worker = async (): Promise<void> => {
      while (next < CALLS && !killing) {
        const name = `k${next++}`;
        try {
          const { containerId } = await h.call<{ containerId: string }>('createContainer', request(name));
          acked.push({ name, id: containerId });
          if (acked.length === KILL_AFTER_ACKS) killing = h.serve().stop('SIGKILL');
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const exit = await killing;
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    t.diagnostic(`${acked.length} acknowledged before the kill took effect, ${failed} failed with it`);
    assert.ok(acked.length >= KILL_AFTER_ACKS);

    await h.restart();
    await until('recovery to end every saga', async () => (await inFlight()) === 0);
    const verify = await runCli(['verify', '--socket', h.socket]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const events = await runCli(['events', '--json', '--socket', h.socket, '--type', 'ContainerCreated']);
    const created = new Set(
      events.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { stream: string }).stream),
    );
    const missing = acked.filter((a) => !created.has(`container-${a.id}`));
    assert.deepEqual(missing, [], 'every acknowledged CreateContainer has its ContainerCreated in the log');
    const listed = await h.call<{ containers: Array<{ id: string; metadata: { name: string } }> }>(
      'listContainers',
      {},
    );
    const byId = new Map(listed.containers.map((c) => [c.id, c.metadata.name]));
    for (const a of acked) assert.equal(byId.get(a.id), a.name);
    const against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    assert.equal(against.code, 0, against.stdout + against.stderr);
  });

  it('refuses a second serve on the same root at once, and leaves the running one and its socket alone', async (t) => {
    const before = statSync(h.socket);
    for (const socket of [h.socket, join(h.root, 'second.sock')]) {
      const started = Date.now();
      // The failure this guards against is waiting on the lock without end: the wait is
      // bounded in tens of seconds (runCli kills the process and rejects past it).
      const second = await runCli(serveArgs(socket), { timeoutMs: 60_000 });
      const tookMs = Date.now() - started;
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /the ledger at .* is held by another cri-ledger process/);
      t.diagnostic(
        `second serve (socket ${socket === h.socket ? 'the same' : 'another'}) exited ${second.code} in ${tookMs} ms: ${second.stderr.trim().split('\n').at(-1)}`,
      );
      if (socket !== h.socket) assert.equal(existsSync(socket), false, 'the refused instance bound no socket');
    }
    const now = statSync(h.socket);
    assert.equal(now.ino, before.ino, "the socket file is the running service's, not removed or replaced");
    assert.equal(now.isSocket(), true);
    const version = await h.call<{ runtimeName: string }>('version', {});
    assert.equal(version.runtimeName, 'cri-ledger');
    assert.equal(h.serve().child.exitCode, null, 'the first service still runs');
  });

  it('answers Version, Status, ListContainers and ContainerStatus while a CreateContainer step is held', async (t) => {
    const { containerId: someId } = await h.call<{ containerId: string }>('createContainer', request('probed'));
    await h.restart(`CreateContainer.ContainerRecord=delay(${HELD_STEP_MS})`);
    const probes: Record<string, () => Promise<unknown>> = {
      Version: () => h.call('version', {}),
      Status: () => h.call('status', {}),
      ListContainers: () => h.call('listContainers', {}),
      ContainerStatus: () => h.call('containerStatus', { containerId: someId }),
    };
    await until('startup recovery', async () => (await inFlight()) === 0);

    const records = async (): Promise<number> =>
      (await unaryCall<{ containers: unknown[] }>(h.api.containers, 'List', {})).containers.length;
    const recordsBefore = await records();
    const slowStarted = Date.now();
    let released = false;
    const slow = h.call<{ containerId: string }>('createContainer', request('slow')).then(() => {
      released = true;
      return Date.now() - slowStarted;
    });
    // The step is held once its side effect (the containerd record) exists.
    await until('the ContainerRecord step to be held', async () => (await records()) > recordsBefore, HELD_STEP_MS);
    const answeredWhileHeld: string[] = [];
    for (let round = 0; round < PROBE_ROUNDS; round++) {
      await Promise.all(
        Object.entries(probes).map(async ([name, probe]) => {
          await within(probe(), ANSWER_BOUND_MS, name);
          if (!released) answeredWhileHeld.push(name);
        }),
      );
    }
    const slowMs = await slow;
    t.diagnostic(`CreateContainer was held ${slowMs} ms; ${answeredWhileHeld.length} probe answers came while it was`);
    assert.ok(slowMs >= HELD_STEP_MS, 'the step was held');
    assert.equal(
      answeredWhileHeld.length,
      PROBE_ROUNDS * Object.keys(probes).length,
      'every probe was answered before the held step let go',
    );
  });
});
