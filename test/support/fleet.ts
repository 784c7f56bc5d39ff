import { mkdtemp, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { pino } from 'pino';
import { NatsRelay, type NatsRelayOptions } from '../../src/adapters/bus/nats-relay.js';
import { parseSubjectToken } from '../../src/adapters/bus/nats-subject.js';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import type { NatsCluster } from './nats-cluster.js';
import { generateScenario, type ScenarioAppend } from './scenario.js';

/*
 * Nodes of a fleet without containerd: each a LevelDB log of its own, appended to by a
 * writer, and a relay publishing it into one JetStream cluster. What the service does
 * with NATS is the relay over the log, so faults on the cluster are tested on this.
 */

/** Relay settings for fault tests: the defaults' shape, scaled so a failover costs seconds. */
export const FLEET_RELAY_TUNING = { publishTimeoutMs: 2_000, reconnectWaitMs: 100, retryBackoffMaxMs: 1_000 };

export interface FleetNode {
  node: string;
  dir: string;
  log: LevelDbEventLog;
  relay: NatsRelay;
}

export interface Fleet {
  nodes: FleetNode[];
  /** Stops relays, closes logs, removes dirs. */
  stop(): Promise<void>;
}

/** One LevelDB log and one relay per node name, all publishing to `servers` (R3 by default). */
export async function startFleet(options: {
  nodes: string[];
  servers: string;
  stream?: string;
  replicas?: number;
  relay?: Partial<NatsRelayOptions>;
}): Promise<Fleet> {
  const root = await mkdtemp(join(tmpdir(), 'cri-ledger-fleet-'));
  const nodes: FleetNode[] = [];
  const stop = async (): Promise<void> => {
    for (const n of nodes) await n.relay.stop().catch(() => undefined);
    for (const n of nodes) await n.log.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (const node of options.nodes) {
      const dir = join(root, node);
      const log = await LevelDbEventLog.open({ dir, node });
      const relay = await NatsRelay.start({
        log,
        servers: options.servers,
        node,
        ...(options.stream ? { stream: options.stream } : {}),
        replicas: options.replicas ?? 3,
        duplicateWindowMs: 10 * 60_000,
        maxAgeMs: 0,
        logger: pino({ level: 'silent' }),
        ...FLEET_RELAY_TUNING,
        ...options.relay,
      }).catch(async (error: unknown) => {
        await log.close();
        throw error;
      });
      nodes.push({ node, dir, log, relay });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, stop };
}

// Rounds are numbered across every writer this process starts: streams stay unique per log.
let lastRound = 0;

/** Appends generated histories to every node's log, about `eventsPerS` events per node per second. */
export function startWriters(nodes: FleetNode[], eventsPerS: number): { stop(): Promise<void>; appended(): number } {
  let running = true;
  let appended = 0;
  const loops = nodes.map(async (n, index) => {
    let round = 0;
    let queue: ScenarioAppend[] = [];
    const started = performance.now();
    let written = 0;
    while (running) {
      if (queue.length === 0) {
        round = ++lastRound;
        queue = generateScenario({ pods: 20, seed: index * 100_000 + round });
      }
      const a = queue.shift()!;
      // Unique streams per round, so generated histories never collide in one log.
      await n.log.append(`${a.stream}-r${round}`, a.expected, a.events);
      written += a.events.length;
      appended += a.events.length;
      const aheadMs = (written / eventsPerS) * 1000 - (performance.now() - started);
      if (aheadMs > 0) await new Promise((r) => setTimeout(r, aheadMs));
    }
  });
  return {
    appended: () => appended,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Resolves with the ms it took until every relay has published its whole log (lag 0). */
export async function waitDrained(nodes: FleetNode[], timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!nodes.every((n) => n.relay.status().lag === 0)) {
    if (performance.now() - started > timeoutMs) {
      const lags = nodes.map(
        (n) => `${n.node} lag ${n.relay.status().lag} (${n.relay.status().lastError ?? 'no error'})`,
      );
      throw new Error(`relays did not drain in ${timeoutMs} ms: ${lags.join('; ')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return Math.round(performance.now() - started);
}

/** One message of the stream: its node (subject token), the envelope's seq and id. */
export interface StoredEvent {
  node: string;
  seq: number;
  id: string;
}

/** Every message of `stream`, in stream order, read through any reachable server. */
export async function readStream(servers: string, stream: string): Promise<StoredEvent[]> {
  const nc = await connect({ servers: servers.split(','), timeout: 5_000 });
  try {
    const js = nc.jetstream();
    const consumer = await js.consumers.get(stream);
    const pending = (await consumer.info()).num_pending;
    const out: StoredEvent[] = [];
    if (pending === 0) return out;
    const messages = await consumer.consume({ max_messages: 512 });
    for await (const m of messages) {
      const body = JSON.parse(m.string()) as { seq: number; id: string };
      out.push({ node: parseSubjectToken(m.subject.split('.')[1]!), seq: body.seq, id: body.id });
      if (m.info.pending === 0) {
        messages.stop();
        break;
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** The stream's state as its leader reports it (counts, first and last seq, deletions, data it knows it lost). */
export async function streamState(servers: string, stream: string): Promise<unknown> {
  const nc = await connect({ servers: servers.split(','), timeout: 5_000 });
  try {
    const info = await (await nc.jetstreamManager()).streams.info(stream);
    const { messages, first_seq, last_seq, num_deleted, lost } = info.state;
    return { messages, first_seq, last_seq, num_deleted, lost, leader: info.cluster?.leader };
  } finally {
    await nc.close();
  }
}

/** What the stream holds against the logs: the figures the fault tests assert and print. */
export interface FleetAudit {
  events: number;
  messages: number;
  /** Events some log holds that the stream does not. */
  lost: number;
  /** The first few of them, as `node/seq`. */
  missing: string[];
  /** Ids stored more than once (the dedupe window missed a re-send). */
  storedTwice: number;
  /** Ids seen more than once after deduplication by id: 0 by construction, kept as the check. */
  duplicatedAfterDedupe: number;
  /** Messages stored after a later event of their own node (the documented caveat). */
  outOfOrder: number;
  /** The most positions of its node's messages one event landed behind its seq order. */
  maxLateBy: number;
  /** Each node's seqs, deduplicated by id and read in stream order, equal 1..head? */
  orderAfterHoldBack: boolean;
}

/** Compares the stream's messages with every node's log head (seqs 1..head each). */
export function auditFleet(nodes: Array<{ node: string; head: number }>, stored: StoredEvent[]): FleetAudit {
  const ids = new Map<string, number>();
  for (const s of stored) ids.set(s.id, (ids.get(s.id) ?? 0) + 1);
  const storedTwice = [...ids.values()].filter((n) => n > 1).length;
  const seen = new Set<string>();
  let duplicatedAfterDedupe = 0;
  let lost = 0;
  const missing: string[] = [];
  let outOfOrder = 0;
  let maxLateBy = 0;
  let orderAfterHoldBack = true;
  for (const { node, head } of nodes) {
    const mine = stored.filter((s) => s.node === node);
    const unique: StoredEvent[] = [];
    const once = new Set<string>();
    for (const s of mine) {
      if (once.has(s.id)) continue;
      once.add(s.id);
      unique.push(s);
    }
    for (const s of unique) {
      if (seen.has(`${node}/${s.seq}`)) duplicatedAfterDedupe++;
      seen.add(`${node}/${s.seq}`);
    }
    const seqs = new Set(unique.map((s) => s.seq));
    for (let seq = 1; seq <= head; seq++) {
      if (seqs.has(seq)) continue;
      lost++;
      if (missing.length < 10) missing.push(`${node}/${seq}`);
    }
    // An event is late when a later seq of its node was stored before it.
    let highest = 0;
    const position = new Map<number, number>();
    unique.forEach((s, i) => position.set(s.seq, i));
    for (const s of unique) {
      if (s.seq < highest) {
        outOfOrder++;
        maxLateBy = Math.max(maxLateBy, position.get(s.seq)! - (s.seq - 1));
      }
      highest = Math.max(highest, s.seq);
    }
    const sorted = [...seqs].sort((a, b) => a - b);
    if (sorted.length !== head || sorted.some((seq, i) => seq !== i + 1)) orderAfterHoldBack = false;
  }
  return {
    events: nodes.reduce((n, x) => n + x.head, 0),
    messages: stored.length,
    lost,
    missing,
    storedTwice,
    duplicatedAfterDedupe,
    outOfOrder,
    maxLateBy,
    orderAfterHoldBack,
  };
}

/** What one fault did, beside the audit of the whole stream after it. */
export interface FaultFigures extends FleetAudit {
  /** Events appended while the fault ran (all nodes). */
  appended: number;
  /** The largest lag of any relay. */
  peakLag: number;
  /** The longest time any relay went without its cursor moving while it had a lag. */
  longestStallMs: number;
  /** From the heal until every relay's lag was 0 (writers stop at the heal). */
  drainMs: number;
}

/** The cluster server a relay is connected to now, by server_name, from its status' host:port. */
export function relayServer(cluster: NatsCluster, node: FleetNode): string | undefined {
  const hostPort = node.relay.status().server;
  return cluster.servers.find((s) => hostPort?.endsWith(`:${s.port}`))?.name;
}

/**
 * Writes on every node at `eventsPerS` each, runs `fault` after `leadMs`, keeps writing
 * `holdMs`, runs `heal`, stops the writers, waits for every relay to drain, and audits
 * the whole stream against the logs.
 */
export async function measureFault(options: {
  fleet: Fleet;
  cluster: NatsCluster;
  stream: string;
  eventsPerS: number;
  fault: () => Promise<void>;
  heal: () => Promise<void>;
  leadMs?: number;
  holdMs: number;
  drainTimeoutMs?: number;
}): Promise<FaultFigures> {
  const { fleet } = options;
  const writers = startWriters(fleet.nodes, options.eventsPerS);
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
    await sleep(options.leadMs ?? 1_500);
    const headsAtFault = fleet.nodes.map((n) => `${n.node}/${n.log.head()} (cursor ${n.relay.status().cursor})`);
    await options.fault();
    await sleep(options.holdMs);
    await options.heal();
    await writers.stop();
    const drainMs = await waitDrained(fleet.nodes, options.drainTimeoutMs ?? 60_000);
    if (drainMs > 5_000) {
      const errors = fleet.nodes.map((n) => `${n.node}: ${n.relay.status().lastError ?? 'no error'}`);
      process.stderr.write(`# slow drain (${drainMs} ms); last errors: ${errors.join('; ')}\n`);
    }
    clearInterval(sampler);
    const heads = fleet.nodes.map((n) => ({ node: n.node, head: n.log.head() }));
    let audit = auditFleet(heads, await readStream(options.cluster.urls, options.stream));
    if (audit.lost > 0) {
      // A read right after the heal may meet a cluster still electing: read again once it
      // settled, and say so, so a read that came too early is told from a loss.
      await sleep(5_000);
      const again = auditFleet(heads, await readStream(options.cluster.urls, options.stream));
      if (again.lost > 0)
        process.stderr.write(
          `# stream state: ${JSON.stringify(await streamState(options.cluster.urls, options.stream))}\n`,
        );
      process.stderr.write(
        `# fleet audit: ${audit.lost} missing on the first read, ${again.lost} five seconds later` +
          `${again.lost > 0 ? ` (${again.missing.join(', ')} of heads ${heads.map((h) => `${h.node}/${h.head}`).join(', ')}; at the fault ${headsAtFault.join(', ')})` : ''}\n`,
      );
      audit = again;
    }
    return { ...audit, appended: writers.appended(), peakLag, longestStallMs: Math.round(longestStallMs), drainMs };
  } finally {
    clearInterval(sampler);
    await writers.stop();
  }
}

/** The four faults of issue 17, each as a fault and its heal on `cluster`. */
export function fleetFaults(
  cluster: NatsCluster,
  fleet: Fleet,
  stream: string,
): Array<{
  name: string;
  holdMs: number;
  prepare: () => Promise<string>;
  fault: () => Promise<void>;
  heal: () => Promise<void>;
}> {
  let victim = '';
  return [
    {
      name: 'follower killed and restarted',
      holdMs: 4_000,
      prepare: async () => {
        const leader = await cluster.streamLeader(stream);
        // A follower a relay is on if there is one: its relays must move.
        const used = fleet.nodes.map((n) => relayServer(cluster, n)).filter((s): s is string => s !== undefined);
        victim = used.find((s) => s !== leader) ?? cluster.servers.find((s) => s.name !== leader)!.name;
        return `killing ${victim} (leader ${leader}; relays on ${used.join(', ')})`;
      },
      fault: () => cluster.kill(victim),
      heal: async () => {
        await cluster.start(victim);
        await cluster.waitHealthy();
      },
    },
    {
      name: "the stream's leader killed",
      holdMs: 4_000,
      prepare: async () => {
        victim = await cluster.streamLeader(stream);
        return `killing ${victim}, the leader; relays on ${fleet.nodes.map((n) => relayServer(cluster, n)).join(', ')}`;
      },
      fault: () => cluster.kill(victim),
      heal: async () => {
        await cluster.start(victim);
        await cluster.waitHealthy();
      },
    },
    {
      name: 'the leader frozen (SIGSTOP)',
      holdMs: 6_000,
      prepare: async () => {
        victim = await cluster.streamLeader(stream);
        return `freezing ${victim}, the leader; relays on ${fleet.nodes.map((n) => relayServer(cluster, n)).join(', ')}`;
      },
      fault: async () => cluster.pause(victim),
      heal: async () => {
        cluster.resume(victim);
        await cluster.waitHealthy();
      },
    },
    {
      name: 'all three killed and restarted',
      holdMs: 2_000,
      prepare: async () => 'killing s1, s2 and s3',
      fault: async () => {
        for (const s of cluster.servers) await cluster.kill(s.name);
      },
      heal: async () => {
        await Promise.all(cluster.servers.map((s) => cluster.start(s.name)));
        await cluster.waitHealthy(30_000);
      },
    },
  ];
}
