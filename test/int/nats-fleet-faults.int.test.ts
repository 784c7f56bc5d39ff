import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  auditFleet,
  readStream,
  startFleet,
  startWriters,
  waitDrained,
  type Fleet,
  type FleetAudit,
} from '../support/fleet.js';
import { startNatsCluster, type NatsCluster } from '../support/nats-cluster.js';

/*
 * Three nodes' relays publish into one R3 stream on a 3-server JetStream cluster while
 * their logs grow; each test does one thing to the cluster, heals it, and then requires
 * the stream to equal the logs: 0 lost, 0 stored twice, each node's events in its seq
 * order once held back by seq (an event re-sent after a failed publish may land up to
 * one relay window late: docs/nats.md), every relay's lag drained. The figures go to the
 * test's diagnostics (`# ...`) and docs/reliability.md.
 */

const STREAM = 'CRI_LEDGER';
const NODES = ['node-a', 'node-b', 'node-c'];
/** Per node: 3 nodes at 150 events/s each, well under what the R3 cluster takes. */
const EVENTS_PER_S = 150;
const WINDOW = 256;

describe('a fleet publishing into an R3 JetStream cluster', () => {
  let cluster: NatsCluster;
  let fleet: Fleet;

  before(async () => {
    cluster = await startNatsCluster(3);
    fleet = await startFleet({ nodes: NODES, servers: cluster.urls, replicas: 3 });
  });
  after(async () => {
    await fleet?.stop();
    await cluster?.stop();
  });

  /** The server a relay is on now, by name (`s2`), from its status' host:port. */
  const serverOf = (i: number): string | undefined => {
    const hostPort = fleet.nodes[i]!.relay.status().server;
    return cluster.servers.find((s) => hostPort?.endsWith(`:${s.port}`))?.name;
  };

  /**
   * Writes on every node, runs `fault` 1.5 s in, keeps writing `holdMs`, runs `heal`,
   * stops the writers, and waits for the relays to drain. Returns the figures.
   */
  async function underFault(
    t: TestContext,
    what: string,
    fault: () => Promise<void>,
    heal: () => Promise<void>,
    holdMs = 4_000,
  ): Promise<FleetAudit> {
    const writers = startWriters(fleet.nodes, EVENTS_PER_S);
    let peakLag = 0;
    let longestStallMs = 0;
    const lastMove = fleet.nodes.map(() => performance.now());
    const lastCursor = fleet.nodes.map((n) => n.relay.status().cursor);
    const sampler = setInterval(() => {
      fleet.nodes.forEach((n, i) => {
        const s = n.relay.status();
        peakLag = Math.max(peakLag, s.lag);
        const now = performance.now();
        if (s.cursor !== lastCursor[i] || s.lag === 0) {
          longestStallMs = Math.max(longestStallMs, now - lastMove[i]!);
          lastMove[i] = now;
          lastCursor[i] = s.cursor;
        }
      });
    }, 20);
    try {
      await sleep(1_500);
      await fault();
      await sleep(holdMs);
      await heal();
      await writers.stop();
      const drainMs = await waitDrained(fleet.nodes, 60_000);
      clearInterval(sampler);
      const stored = await readStream(cluster.urls, STREAM);
      const audit = auditFleet(
        fleet.nodes.map((n) => ({ node: n.node, head: n.log.head() })),
        stored,
      );
      t.diagnostic(
        `${what}: ${writers.appended()} events appended during the test, ${audit.events} in the logs, ` +
          `${audit.messages} messages; lost ${audit.lost}, stored twice ${audit.storedTwice}, duplicated after ` +
          `dedupe ${audit.duplicatedAfterDedupe}; out of order ${audit.outOfOrder} (max ${audit.maxLateBy} late); ` +
          `peak lag ${peakLag}, longest publish stall ${Math.round(longestStallMs)} ms, drained ${drainMs} ms after the heal`,
      );
      assert.equal(audit.lost, 0, 'no event lost');
      assert.equal(audit.storedTwice, 0, 'no event stored twice');
      assert.equal(audit.duplicatedAfterDedupe, 0, 'no event twice after dedupe by id');
      assert.ok(audit.orderAfterHoldBack, "each node's events are its seqs 1..head");
      assert.ok(audit.maxLateBy <= WINDOW, `no event more than one window late (${audit.maxLateBy})`);
      for (const n of fleet.nodes) assert.equal(n.relay.status().lag, 0, `${n.node} drained`);
      return audit;
    } finally {
      clearInterval(sampler);
      await writers.stop();
    }
  }

  it('reports the server each relay is on, and the R3 stream limits', () => {
    for (let i = 0; i < NODES.length; i++) {
      const s = fleet.nodes[i]!.relay.status();
      assert.ok(serverOf(i), `relay ${i} is on one of the cluster's servers (${s.server})`);
      assert.equal(s.servers?.length, 3);
      assert.deepEqual(s.streamLimits, { replicas: 3, maxAgeMs: 0, maxBytes: 0, duplicateWindowMs: 600_000 });
      assert.equal(s.warnings, undefined);
    }
  });

  it('loses nothing when a follower is killed and restarted (one a relay is on, if any)', async (t) => {
    const leader = await cluster.streamLeader(STREAM);
    // Prefer a follower a relay is connected to: the leader has a test of its own.
    const used = NODES.map((_, i) => serverOf(i)).filter((s): s is string => s !== undefined);
    const victim = used.find((s) => s !== leader) ?? cluster.servers.find((s) => s.name !== leader)!.name;
    t.diagnostic(`killing ${victim} (leader ${leader}; relays on ${used.join(', ')})`);
    await underFault(
      t,
      'one server killed',
      () => cluster.kill(victim),
      async () => {
        await cluster.start(victim);
        await cluster.waitHealthy();
      },
    );
  });

  it("loses nothing when the stream's leader is killed", async (t) => {
    const leader = await cluster.streamLeader(STREAM);
    await underFault(
      t,
      `the leader (${leader}) killed`,
      () => cluster.kill(leader),
      async () => {
        t.diagnostic(`new leader ${await cluster.streamLeader(STREAM)}`);
        await cluster.start(leader);
        await cluster.waitHealthy();
      },
    );
  });

  it('loses nothing when one server is frozen (SIGSTOP: partitioned from clients and peers)', async (t) => {
    // The leader, and a server a relay is on if the leader has none: both sides of a partition.
    const leader = await cluster.streamLeader(STREAM);
    const used = NODES.map((_, i) => serverOf(i));
    t.diagnostic(`freezing ${leader}, the leader; relays on ${used.join(', ')}`);
    await underFault(
      t,
      `the leader (${leader}) frozen`,
      async () => cluster.pause(leader),
      async () => {
        cluster.resume(leader);
        await cluster.waitHealthy();
      },
      6_000,
    );
  });

  it('loses nothing when all three servers are killed and restarted', async (t) => {
    await underFault(
      t,
      'all three killed and restarted',
      async () => {
        for (const s of cluster.servers) await cluster.kill(s.name);
      },
      async () => {
        await Promise.all(cluster.servers.map((s) => cluster.start(s.name)));
        await cluster.waitHealthy(30_000);
      },
      2_000,
    );
  });
});
