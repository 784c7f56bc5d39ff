import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { connect, type JsMsg } from 'nats';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

/*
 * NATS is fan-out, never in the way: with nats-server stopped for most of 1,000
 * CreateContainer calls, every call succeeds, and once it is back the stream holds every
 * event of the log exactly once, in seq order. Then the relay is killed (SIGKILL of the
 * service) while it drains a backlog of committed but unpublished events: after the
 * restart it re-sends from its cursor and the dedupe window (Nats-Msg-Id = event id)
 * drops what JetStream already had, so consumers see each id once.
 */

const STREAM = 'CRI_LEDGER';
const PODS = 4;
const CALLS = 1_000;
const CONCURRENCY = 8;

interface StreamEvent {
  id: string;
  seq: number;
  msgId: string | undefined;
}

interface LogEvent {
  id: string;
  seq: number;
}

describe('NATS and the relay under faults', () => {
  let nats: NatsServer;
  let h: CriHarness;
  const pods: Array<{ id: string; config: object }> = [];

  const request = (i: number) => {
    const pod = pods[i % PODS]!;
    return {
      podSandboxId: pod.id,
      sandboxConfig: pod.config,
      config: { metadata: { name: `c${i}`, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
    };
  };

  /** Runs CreateContainer for `from..to-1`, CONCURRENCY at a time; `onDone(n)` after each answer. */
  async function createMany(
    from: number,
    to: number,
    onDone: (done: number) => void = () => undefined,
  ): Promise<{ ok: number; errors: string[] }> {
    let next = from;
    let ok = 0;
    const errors: string[] = [];
    const worker = async (): Promise<void> => {
      while (next < to) {
        const i = next++;
        try {
          await h.call('createContainer', request(i));
          ok++;
        } catch (error) {
          errors.push(`c${i}: ${(error as Error).message}`);
        }
        onDone(ok + errors.length);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    return { ok, errors };
  }

  const status = async () => {
    const r = await runCli(['status', '--socket', h.socket, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { head: number; relay: { connected: boolean; cursor: number; lag: number } };
  };

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function logEvents(): Promise<LogEvent[]> {
    const r = await runCli(['events', '--json', '--socket', h.socket], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as LogEvent);
  }

  async function streamEvents(): Promise<StreamEvent[]> {
    const nc = await connect({ servers: nats.url });
    try {
      const js = nc.jetstream();
      const info = await (await nc.jetstreamManager()).streams.info(STREAM);
      if (info.state.messages === 0) return [];
      const consumer = await js.consumers.get(STREAM);
      const out: StreamEvent[] = [];
      const messages = await consumer.consume();
      for await (const m of messages as AsyncIterable<JsMsg>) {
        const body = m.json<LogEvent>();
        out.push({ id: body.id, seq: body.seq, msgId: m.headers?.get('Nats-Msg-Id') });
        if (m.info.pending === 0) break;
      }
      return out;
    } finally {
      await nc.close();
    }
  }

  const streamCount = async (): Promise<number> => {
    const nc = await connect({ servers: nats.url });
    try {
      return (await (await nc.jetstreamManager()).streams.info(STREAM)).state.messages;
    } finally {
      await nc.close();
    }
  };

  /** Compares the stream with the log: lost, duplicated, out of order, and a wrong Nats-Msg-Id. */
  async function compare(t: TestContext): Promise<{ log: number; stream: number; lost: number; duplicated: number }> {
    await until('the relay to catch up', async () => {
      const s = await status();
      return s.relay.connected && s.relay.lag === 0 && s.relay.cursor === s.head;
    });
    const [log, stream] = [await logEvents(), await streamEvents()];
    const inStream = new Map<string, number>();
    for (const e of stream) inStream.set(e.id, (inStream.get(e.id) ?? 0) + 1);
    const lost = log.filter((e) => !inStream.has(e.id)).length;
    const duplicated = stream.length - inStream.size;
    const figures = { log: log.length, stream: stream.length, lost, duplicated };
    t.diagnostic(
      `log events ${figures.log}, stream messages ${figures.stream}, lost ${lost}, duplicated ${duplicated}`,
    );
    assert.equal(lost, 0, 'no event of the log is missing from the stream');
    assert.equal(duplicated, 0, 'no event is in the stream twice');
    assert.deepEqual(
      stream.map((e) => e.seq),
      log.map((e) => e.seq),
      'the stream holds the log in seq order',
    );
    assert.deepEqual(
      stream.map((e) => e.id),
      log.map((e) => e.id),
    );
    assert.ok(
      stream.every((e) => e.msgId === e.id),
      'Nats-Msg-Id is the event id',
    );
    return figures;
  }

  before(async () => {
    nats = await startNatsServer();
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-nats-', env: { CRI_LEDGER_NATS_URL: nats.url } });
    for (let p = 0; p < PODS; p++) {
      const config = {
        metadata: { name: `nats-${p}`, uid: `uid-nats-${p}`, namespace: 'default', attempt: 0 },
        linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
      };
      pods.push({ id: (await h.call<{ podSandboxId: string }>('runPodSandbox', { config })).podSandboxId, config });
    }
  });
  after(async () => {
    await h?.cleanup();
    await nats?.stop();
  });

  it(`every one of ${CALLS} CreateContainer calls succeeds while nats-server is stopped and started again, and the stream then holds every event once, in seq order`, async (t) => {
    let down: Promise<void> | undefined;
    let up: Promise<void> | undefined;
    let answeredWhileDown = 0;
    let isDown = false;
    const started = Date.now();
    const result = await createMany(0, CALLS, (done) => {
      if (isDown) answeredWhileDown++;
      if (done === 150 && !down) down = nats.down().then(() => void (isDown = true));
      if (done === 800 && !up)
        up = (async () => {
          await down;
          isDown = false;
          await nats.restart();
        })();
    });
    const tookMs = Date.now() - started;
    await up;
    t.diagnostic(`${CALLS} CreateContainer in ${tookMs} ms; ${answeredWhileDown} answered while nats-server was down`);
    assert.deepEqual(result.errors, []);
    assert.equal(result.ok, CALLS);
    assert.ok(answeredWhileDown >= 300, `calls answered during the outage: ${answeredWhileDown}`);
    const figures = await compare(t);
    assert.ok(figures.log >= CALLS * 4, `the log holds at least 4 events per container (${figures.log})`);
  });

  it('loses and duplicates nothing when the service is killed while the relay drains a backlog, and restarted', async (t) => {
    await nats.down();
    const backlog = await createMany(CALLS, CALLS + 300);
    assert.deepEqual(backlog.errors, []);
    const before = await streamCount().catch(() => undefined);
    assert.equal(before, undefined, 'nats-server is down: the backlog is committed, not published');
    const { head } = await status();
    let atStart = 0;
    let atKill = 0;
    await nats.restart();
    // Kill as soon as the drain has begun: JetStream holds part of the backlog, and the
    // cursor the service persisted may lag behind what JetStream acked. One connection,
    // polled without pause, so the kill lands early in the drain even on a fast machine.
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await nc.jetstreamManager();
      atStart = (await jsm.streams.info(STREAM)).state.messages;
      const deadline = Date.now() + 10_000;
      while ((atKill = (await jsm.streams.info(STREAM)).state.messages) === atStart) {
        if (Date.now() > deadline) throw new Error('the relay did not start draining');
      }
      await h.serve().stop('SIGKILL');
    } finally {
      await nc.close();
    }
    const stopped = await runCli(['status', '--db', join(h.root, 'ledger'), '--json']);
    const persisted = (JSON.parse(stopped.stdout) as { relay: { cursor: number } }).relay.cursor;
    const atDeath = await streamCount();
    t.diagnostic(
      `backlog up to seq ${head}; stream messages: ${atStart} before the drain, ${atKill} at the kill, ${atDeath} once the process was gone; ` +
        `persisted relay cursor ${persisted}, so the restart re-sends ${Math.max(0, atDeath - persisted)} events JetStream already holds`,
    );
    assert.ok(persisted < head, 'the kill left part of the backlog unpublished');
    await h.restart();
    const figures = await compare(t);
    assert.equal(figures.log, head);
  });
});
