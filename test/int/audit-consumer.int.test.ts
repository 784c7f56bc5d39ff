import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { connect, nanos, RetentionPolicy, StorageType } from 'nats';
import { pino } from 'pino';
import { NatsRelay } from '../../src/adapters/bus/nats-relay.js';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { runCli, tempRoot, writeScenarioLog } from '../support/cli.js';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { generateScenario } from '../support/scenario.js';
import { until } from '../support/until.js';

/*
 * The fleet audit consumer of docs/nats.md (examples/audit-consumer.ts), run as written:
 * two nodes' relays publish into one stream; the consumer reads every event of both once
 * per id, is killed halfway and resumes where it stopped, and narrows by node and type.
 */

const CONSUMER = fileURLToPath(new URL('../../examples/audit-consumer.js', import.meta.url));

/** The events the consumer handled: its --out file, one envelope a line. */
function readHandled(out: string): Array<{ id: string; node: string; type: string }> {
  return readFileSync(out, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { id: string; node: string; type: string });
}

/**
 * Runs the consumer until it has been idle 5 s (past its 2 s ack wait), or until `killAfter`
 * lines (SIGKILL); `at` runs once when that many lines have been printed.
 */
function consume(
  args: string[],
  killAfter?: number,
  at?: { lines: number; run: () => void },
): Promise<Array<{ id: string; node: string; type: string }>> {
  let ran = false;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CONSUMER, ...args, '--ack-wait', '2s', '--idle-exit', '5s'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let buffer = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop()!;
      lines.push(...parts);
      if (at && !ran && lines.length >= at.lines) {
        ran = true;
        at.run();
      }
      if (killAfter !== undefined && lines.length >= killAfter) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGKILL') reject(new Error(`consumer exited ${code}: ${stderr}`));
      else resolve(lines.filter(Boolean).map((l) => JSON.parse(l) as { id: string; node: string; type: string }));
    });
  });
}

describe('the fleet audit consumer recipe', () => {
  let nats: NatsServer;
  let temp: { dir: string; cleanup: () => Promise<void> };
  const relays: NatsRelay[] = [];
  const logs: LevelDbEventLog[] = [];
  const published: LedgerEvent[] = [];

  before(async () => {
    nats = await startNatsServer();
    temp = await tempRoot('cri-ledger-audit-');
    // The fleet's stream, made once by the operator with every node's subjects (docs/nats.md):
    // the relays find it covers them and change nothing.
    const nc = await connect({ servers: nats.url });
    await (await nc.jetstreamManager()).streams.add({
      name: 'CRI_LEDGER',
      subjects: ['cri-ledger.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: 1,
      duplicate_window: nanos(120_000),
      max_age: 0,
    });
    await nc.close();
    for (const node of ['node-a', 'node-b']) {
      const dir = join(temp.dir, node);
      published.push(...(await writeScenarioLog(dir, { pods: 3, seed: node.length, node })));
      const log = await LevelDbEventLog.open({ dir, node });
      logs.push(log);
      const relay = await NatsRelay.start({
        log,
        servers: nats.url,
        node,
        replicas: 1,
        duplicateWindowMs: 120_000,
        maxAgeMs: 0,
        logger: pino({ level: 'silent' }),
      });
      relays.push(relay);
    }
    await until('both relays to drain', async () => relays.every((r) => r.status().lag === 0), 30_000);
  });
  after(async () => {
    for (const r of relays) await r.stop();
    for (const l of logs) await l.close();
    await nats?.stop();
    await temp?.cleanup();
  });

  it("reads every node's events once per id, across a kill and a restart of the consumer", async () => {
    const out = join(temp.dir, 'events.ndjson');
    const args = ['--nats', nats.url, '--durable', 'audit', '--out', out];
    // SIGKILL after 40 lines; on a busy machine the consumer may print the rest in the same
    // burst before the kill lands. Either way the two runs together must hold each event once.
    const first = await consume(args, 40);
    assert.ok(first.length >= 40, `the first run printed ${first.length}`);
    await consume(args);
    // The file is the record (stdout may repeat a line across the kill).
    const handled = readHandled(out);
    const all = handled.map((e) => e.id);
    assert.equal(new Set(all).size, all.length, 'no event twice');
    assert.deepEqual(new Set(all), new Set(published.map((e) => e.id)), 'every event of both nodes');
    assert.deepEqual(new Set(handled.map((e) => e.node)), new Set(['node-a', 'node-b']));
  });

  it('narrows to one node and one event type with a durable of its own', async () => {
    const got = await consume([
      '--nats',
      nats.url,
      '--durable',
      'starts-on-a',
      '--node',
      'node-a',
      '--type',
      'ContainerStarted',
      '--out',
      join(temp.dir, 'starts.ndjson'),
    ]);
    const expected = published.filter((e) => e.node === 'node-a' && e.type === 'ContainerStarted').map((e) => e.id);
    assert.ok(expected.length > 0);
    assert.deepEqual(
      got.map((e) => e.id),
      expected,
      "node-a's starts, in its log's order",
    );
  });
});

describe('the fleet audit consumer recipe on an R3 cluster', () => {
  let cluster: NatsCluster;
  let temp: { dir: string; cleanup: () => Promise<void> };
  const relays: NatsRelay[] = [];
  const logs: LevelDbEventLog[] = [];
  const published: LedgerEvent[] = [];

  before(async () => {
    [cluster, temp] = await Promise.all([startNatsCluster(3), tempRoot('cri-ledger-audit-r3-')]);
    // The fleet's stream as docs/nats.md makes it, with --replicas 3.
    const nc = await connect({ servers: cluster.urls.split(',') });
    await (await nc.jetstreamManager()).streams.add({
      name: 'CRI_LEDGER',
      subjects: ['cri-ledger.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: 3,
      duplicate_window: nanos(120_000),
      max_age: 0,
    });
    await nc.close();
    for (const [i, node] of ['node-a', 'node-b'].entries()) {
      const dir = join(temp.dir, node);
      published.push(...(await writeScenarioLog(dir, { pods: 12, seed: 10 + i, node })));
      const log = await LevelDbEventLog.open({ dir, node });
      logs.push(log);
      relays.push(
        await NatsRelay.start({
          log,
          servers: cluster.urls,
          node,
          replicas: 3,
          duplicateWindowMs: 120_000,
          maxAgeMs: 0,
          logger: pino({ level: 'silent' }),
        }),
      );
    }
    await until('both relays to drain', async () => relays.every((r) => r.status().lag === 0), 30_000);
  });
  after(async () => {
    for (const r of relays) await r.stop();
    for (const l of logs) await l.close();
    await cluster?.stop();
    await temp?.cleanup();
  });

  it('reads every event once per id while the stream leader is killed mid-way and the nodes go on', async (t) => {
    const out = join(temp.dir, 'events.ndjson');
    const args = ['--nats', cluster.urls, '--durable', 'audit', '--out', out];
    const leader = await cluster.streamLeader('CRI_LEDGER');
    // After 60 lines the leader dies, and both nodes record another history that their
    // relays publish through the election: the consumer must get those too, once.
    let killed: Promise<void> | undefined;
    const later = async (): Promise<void> => {
      await cluster.kill(leader);
      for (const [i, log] of logs.entries()) {
        for (const a of generateScenario({ pods: 6, seed: 50 + i })) {
          published.push(...(await log.append(`${a.stream}-late`, a.expected, a.events)));
        }
      }
    };
    const first = await consume(args, undefined, {
      lines: 60,
      run: () => {
        killed = later();
      },
    });
    assert.ok(killed, `the leader was killed mid-way (the first run printed ${first.length})`);
    await killed;
    await until('both relays to drain', async () => relays.every((r) => r.status().lag === 0), 30_000);
    // A consumer that idled out during the election reads the rest on its next run, as
    // after any restart; one that rode it out finds nothing left. Together: each once.
    const rest = await consume(args);
    t.diagnostic(
      `leader ${leader} killed after 60 lines while both nodes recorded more; ` +
        `the first run printed ${first.length}, the second ${rest.length}, of ${published.length} events`,
    );
    await cluster.start(leader);
    await cluster.waitHealthy();
    const all = readHandled(out).map((e) => e.id);
    assert.equal(new Set(all).size, all.length, 'no event twice');
    assert.deepEqual(new Set(all), new Set(published.map((e) => e.id)), 'every event of both nodes');
  });

  it("the CLI reads the fleet's stream (cri-ledger.>) with --node '*': each event once, in each node's order", async (t) => {
    const read = async (): Promise<LedgerEvent[]> => {
      const r = await runCli(['events', '--json', '--nats', cluster.urls, '--node', '*'], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LedgerEvent);
    };
    let got = await read();
    if (got.length < published.length) {
      // A read while the cluster settles can end early (docs/nats.md, "Reading right after a fault").
      await new Promise((r) => setTimeout(r, 5_000));
      const again = await read();
      t.diagnostic(`the first read got ${got.length} of ${published.length}, a second one 5 s later ${again.length}`);
      got = again;
    }
    assert.equal(got.length, published.length);
    for (const node of ['node-a', 'node-b']) {
      const seqs = got.filter((e) => e.node === node).map((e) => e.seq);
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => a - b),
        `${node} in seq order`,
      );
      assert.equal(seqs.length, published.filter((e) => e.node === node).length);
    }
    const status = await runCli(['status', '--nats', cluster.urls, '--node', '*'], { timeoutMs: 30_000 });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^nodes +\\*: ${published.length} messages from 2 nodes$`, 'm'));
    const replay = await runCli(['replay', '--until', '1', '--nats', cluster.urls, '--node', '*']);
    assert.equal(replay.code, 1);
    assert.match(replay.stderr, /replay folds one node's log: name one node/);
  });
});
