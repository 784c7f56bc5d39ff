import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { runCli, startServe, tempRoot, writeScenarioLog, type ServeProcess } from '../support/cli.js';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.js';
import { until } from '../support/until.js';

/*
 * Real `cri-ledger serve` processes (no containerd: their logs are written beforehand)
 * relay into a 3-server JetStream cluster through `nats.url` listing all three servers,
 * the stream R3. Then the CLI reads the fleet from the cluster: `--node '*'` or a list,
 * each event saying its node; status says which server a relay is on and the stream's
 * limits; a relay whose server is killed moves to another.
 */

const NODES = ['node-a', 'node-b'];

interface Node {
  node: string;
  root: string;
  socket: string;
  serve: ServeProcess;
  events: LedgerEvent[];
}

describe('a fleet of cri-ledger serve processes on a JetStream cluster', () => {
  let cluster: NatsCluster;
  let temp: Awaited<ReturnType<typeof tempRoot>>;
  const nodes: Node[] = [];

  const status = async (n: { socket: string }): Promise<{ relay: Record<string, unknown> & { lag: number } }> => {
    const r = await runCli(['status', '--json', '--socket', n.socket]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { relay: Record<string, unknown> & { lag: number } };
  };
  const serveNode = async (node: string, seed: number, extra: string[] = []): Promise<Node> => {
    const root = join(temp.dir, node);
    const events = await writeScenarioLog(join(root, 'ledger'), { pods: 3, seed, node });
    const socket = join(root, 's.sock');
    const serve = await startServe({
      root,
      socket,
      args: [
        '--node',
        node,
        '--nats-url',
        cluster.urls,
        '--nats-replicas',
        '3',
        '--containerd-address',
        join(root, 'no-containerd.sock'),
        ...extra,
      ],
    });
    return { node, root, socket, serve, events };
  };
  const nats = (...args: string[]) => runCli([...args, '--nats', cluster.urls], { timeoutMs: 30_000 });

  before(async () => {
    [cluster, temp] = await Promise.all([startNatsCluster(3), tempRoot('cri-ledger-fleet-cli-')]);
    for (const [i, node] of NODES.entries()) nodes.push(await serveNode(node, i + 1));
    await until(
      'both relays to drain',
      async () => (await Promise.all(nodes.map(status))).every((s) => s.relay.lag === 0),
      30_000,
      200,
    );
  });
  after(async () => {
    for (const n of nodes) await n.serve.stop('SIGKILL');
    await cluster?.stop();
    await temp?.cleanup();
  });

  it('status names the server the relay is on, of the three, and the R3 stream limits', async () => {
    const r = await runCli(['status', '--socket', nodes[0]!.socket]);
    assert.equal(r.code, 0, r.stderr);
    const ports = cluster.servers.map((s) => s.port).join('|');
    assert.match(r.stdout, new RegExp(`connected to 127\\.0\\.0\\.1:(${ports}) \\(one of 3 servers\\)`));
    assert.match(
      r.stdout,
      /stream limits +replicas 3, max age 0 \(unlimited\), max bytes 0 \(unlimited\), duplicate window 10m/,
    );
    assert.match(r.stdout, /re-send horizon +1m25s \(worst case\)/);
    assert.doesNotMatch(r.stdout, /WARNING/);
  });

  it('moves a relay to another server when its server is killed, and keeps publishing', async () => {
    const n = nodes[0]!;
    const before = String((await status(n)).relay.server);
    const victim = cluster.servers.find((s) => before.endsWith(`:${s.port}`))!;
    await cluster.kill(victim.name);
    try {
      await until(
        'the relay to be connected to another server',
        async () => {
          const s = (await status(n)).relay;
          return s.connected === true && typeof s.server === 'string' && !s.server.endsWith(`:${victim.port}`);
        },
        30_000,
        200,
      );
    } finally {
      await cluster.start(victim.name);
      await cluster.waitHealthy();
    }
    assert.equal((await status(n)).relay.lag, 0);
  });

  it("events --node '*' prints every node's events once, each with its node", async () => {
    const r = await nats('events', '--json', '--node', '*');
    assert.equal(r.code, 0, r.stderr);
    const got = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LedgerEvent);
    const want = nodes.flatMap((n) => n.events);
    assert.equal(got.length, want.length);
    assert.deepEqual(new Set(got.map((e) => e.id)), new Set(want.map((e) => e.id)));
    for (const n of nodes) {
      assert.deepEqual(
        got.filter((e) => e.node === n.node).map((e) => e.seq),
        n.events.map((e) => e.seq),
        `${n.node}'s events in its log's order`,
      );
    }
    const table = await nats('events', '--node', 'node-a,node-b', '--type', 'ContainerStarted');
    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    assert.match(header!, /^NODE +SEQ +TIME/);
    const starts = nodes.flatMap((n) => n.events.filter((e) => e.type === 'ContainerStarted'));
    assert.equal(rows.length, starts.length);
    assert.deepEqual(new Set(rows.map((row) => row.split(/ +/)[0])), new Set(NODES));
  });

  it('a single --node reads as before: no NODE column', async () => {
    const r = await nats('events', '--node', 'node-b', '--type', 'ContainerStarted');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ *SEQ +TIME/);
  });

  it('timeline and explain find a container on whichever node holds it, and say which', async () => {
    // Generated histories reuse ids across nodes; take one only node-b has.
    const onA = new Set(nodes[0]!.events.map((e) => e.stream));
    const created = nodes[1]!.events.find((e) => e.type === 'ContainerCreated' && !onA.has(e.stream))!;
    assert.ok(created, "node-b has a container node-a's history lacks");
    const id = created.stream.slice('container-'.length);
    const timeline = await nats('timeline', id, '--node', '*');
    assert.equal(timeline.code, 0, timeline.stderr);
    assert.match(timeline.stdout, /^node +node-b$/m);
    const mine = nodes[1]!.events.filter((e) => e.stream === created.stream);
    assert.match(timeline.stdout, new RegExp(`over ${mine.length} events`));
    const explain = await nats('explain', id, '--node', 'node-a,node-b');
    assert.equal(explain.code, 0, explain.stderr);
    assert.match(explain.stdout, /^on node node-b\.$/m);
    assert.match(explain.stdout, new RegExp(`${mine.length} events`));
  });

  it('refuses an id both nodes hold, naming them, and reads it with one --node', async () => {
    const onB = new Set(nodes[1]!.events.map((e) => e.stream));
    const shared = nodes[0]!.events.find((e) => e.type === 'ContainerCreated' && onB.has(e.stream))!;
    assert.ok(shared, 'the two histories share a container id');
    const id = shared.stream.slice('container-'.length, 'container-'.length + 12);
    for (const command of ['timeline', 'explain']) {
      const r = await nats(command, id, '--node', '*');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /is on several nodes \(node-a, node-b\): pass --node with one of them/);
    }
    const one = await nats('timeline', id, '--node', 'node-a');
    assert.equal(one.code, 0, one.stderr);
    assert.doesNotMatch(one.stdout, /^node /m);
  });

  it("report --node '*' draws the fleet's window: each lane and anomaly named with its node", async () => {
    // The histories are written on a clock of their own: the window starts at their first event.
    const first = Math.min(...nodes.flatMap((n) => n.events.map((e) => Date.parse(e.at))));
    const r = await nats('report', '--node', '*', '--since', new Date(first).toISOString(), '--format', 'svg');
    assert.equal(r.code, 0, r.stderr);
    for (const node of NODES) assert.match(r.stdout, new RegExp(`(>pod |> {2})${node}: \\w`), `a lane of ${node}`);
    const total = nodes.reduce((n, node) => n + node.events.length, 0);
    const page = await nats('report', '--node', '*', '--since', new Date(first).toISOString(), '--format', 'html');
    assert.equal(page.code, 0, page.stderr);
    assert.match(page.stdout, new RegExp(`${total} events`), 'every event of both nodes counted');
  });

  it("status --nats --node '*' lists each node's part, the leader and the limits", async () => {
    const r = await nats('status', '--node', '*');
    assert.equal(r.code, 0, r.stderr);
    for (const n of nodes) {
      const head = n.events.at(-1)!.seq;
      assert.match(r.stdout, new RegExp(`^  ${n.node} +${n.events.length} messages, head ledger seq ${head} `, 'm'));
    }
    assert.match(r.stdout, /^replicas +s\d \(leader\) current, s\d current, s\d current$/m);
    assert.match(r.stdout, /^limits +replicas 3, /m);
  });

  it('warns in status when the duplicate window is shorter than the worst-case re-send', async () => {
    const short = await serveNode('node-c', 3, ['--nats-stream', 'SHORT_WINDOW', '--nats-duplicate-window', '30s']);
    try {
      await until('node-c to drain', async () => (await status(short)).relay.lag === 0, 30_000, 200);
      const r = await runCli(['status', '--socket', short.socket]);
      assert.match(
        r.stdout,
        /WARNING +stream SHORT_WINDOW remembers message ids for 30s, less than the relay's worst-case re-send of 1m25s/,
      );
      const fromNats = await runCli([
        'status',
        '--nats',
        cluster.urls,
        '--nats-stream',
        'SHORT_WINDOW',
        '--node',
        'node-c',
      ]);
      assert.match(fromNats.stdout, /WARNING +stream SHORT_WINDOW remembers message ids for 30s/);
    } finally {
      await short.serve.stop('SIGKILL');
    }
  });
});
