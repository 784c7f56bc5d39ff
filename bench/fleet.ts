import { pino } from 'pino';
import { NatsRelay } from '../src/adapters/bus/nats-relay.js';
import {
  fleetFaults,
  measureFault,
  startFleet,
  waitDrained,
  type Fleet,
  type FaultFigures,
} from '../test/support/fleet.js';
import { startNatsCluster, type NatsCluster } from '../test/support/nats-cluster.js';
import { generateScenario } from '../test/support/scenario.js';
import { report, type Row } from './table.js';

/*
 * `npm run bench -- fleet`: relays into a real 3-server JetStream cluster on loopback,
 * the stream replicated R3.
 *
 * - throughput: each node's log is filled first (`--events` per node), then every relay
 *   starts at once and is timed until all have published their whole log, acked by the
 *   R3 stream; 1 node alone, then 3 at once.
 * - faults: 3 nodes append `--rate` events/s each while one fault runs and heals (a
 *   follower killed and restarted, the leader killed, the leader frozen with SIGSTOP, all
 *   three killed and restarted); then the stream is compared with the logs.
 *
 * Flags: --events N (default 20000), --rate N (default 300), --skip-throughput, --skip-faults.
 */

const STREAM = 'CRI_LEDGER';

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** Fills each node's log with `events` generated events, then times every relay at once. */
async function throughput(nodeCount: number, events: number): Promise<{ eventsPerS: number; seconds: number }> {
  const cluster = await startNatsCluster(3);
  // The relays start only once the logs are full: a fleet with relays held back.
  let fleet: Fleet | undefined;
  try {
    fleet = await startFleet({
      nodes: Array.from({ length: nodeCount }, (_, i) => `bench-${i + 1}`),
      servers: cluster.urls,
      replicas: 3,
    });
    for (const n of fleet.nodes) await n.relay.stop();
    for (const [i, n] of fleet.nodes.entries()) {
      for (let seed = 1; n.log.head() < events; seed++) {
        await Promise.all(
          generateScenario({ pods: 200, seed: i * 10_000 + seed }).map((a) =>
            n.log.append(`${a.stream}-${seed}`, a.expected, a.events),
          ),
        );
      }
    }
    const total = fleet.nodes.reduce((sum, n) => sum + n.log.head(), 0);
    const started = performance.now();
    for (const n of fleet.nodes) {
      n.relay = await NatsRelay.start({
        log: n.log,
        servers: cluster.urls,
        node: n.node,
        replicas: 3,
        duplicateWindowMs: 10 * 60_000,
        maxAgeMs: 0,
        logger: pino({ level: 'warn' }),
      });
    }
    await waitDrained(fleet.nodes, 10 * 60_000);
    const seconds = (performance.now() - started) / 1000;
    return { eventsPerS: total / seconds, seconds };
  } finally {
    await fleet?.stop();
    await cluster.stop();
  }
}

async function faults(rate: number): Promise<Array<{ name: string; figures: FaultFigures; note: string }>> {
  const cluster: NatsCluster = await startNatsCluster(3);
  const fleet = await startFleet({ nodes: ['node-a', 'node-b', 'node-c'], servers: cluster.urls, replicas: 3 });
  const out = [];
  try {
    for (const f of fleetFaults(cluster, fleet, STREAM)) {
      const note = await f.prepare();
      console.log(`${f.name}: ${note}`);
      const figures = await measureFault({ fleet, cluster, stream: STREAM, eventsPerS: rate, ...f });
      console.log(`  ${JSON.stringify(figures)}`);
      out.push({ name: f.name, figures, note });
    }
    return out;
  } finally {
    await fleet.stop();
    await cluster.stop();
  }
}

export async function runFleetBench(args: string[]): Promise<void> {
  const events = flag(args, 'events', 20_000);
  const rate = flag(args, 'rate', 300);
  const rows: Row[] = [];
  const extra: Record<string, unknown> = { eventsPerNode: events, ratePerNode: rate };
  if (!args.includes('--skip-throughput')) {
    const one = await throughput(1, events);
    rows.push({ metric: 'r3_1_node_events_per_s', value: one.eventsPerS, unit: 'events/s' });
    const three = await throughput(3, events);
    rows.push({ metric: 'r3_3_nodes_events_per_s', value: three.eventsPerS, unit: 'events/s' });
  }
  if (!args.includes('--skip-faults')) {
    const results = await faults(rate);
    extra.faults = results;
    for (const [i, { figures }] of results.entries()) {
      const p = `fault${i + 1}`;
      rows.push(
        { metric: `${p}_lost`, value: figures.lost, unit: 'events', target: '0' },
        {
          metric: `${p}_duplicated`,
          value: figures.storedTwice + figures.duplicatedAfterDedupe,
          unit: 'events',
          target: '0',
        },
        { metric: `${p}_out_of_order`, value: figures.outOfOrder, unit: 'events' },
        { metric: `${p}_peak_lag`, value: figures.peakLag, unit: 'events' },
        { metric: `${p}_longest_stall`, value: figures.longestStallMs, unit: 'ms' },
        { metric: `${p}_drain_after_heal`, value: figures.drainMs, unit: 'ms' },
      );
    }
    console.log(results.map((r, i) => `fault${i + 1} = ${r.name}`).join('\n'));
  }
  report('fleet', rows, extra);
}
