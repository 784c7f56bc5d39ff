import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import { NatsRelay } from '../src/adapters/bus/nats-relay.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { generateScenario } from '../test/support/scenario.js';

/**
 * Log to JetStream on loopback, acked: fills a log with `events` events first, then
 * times the relay from start until its cursor reaches the head.
 */
export async function benchRelay(events: number): Promise<{ eventsPerS: number; events: number }> {
  const server = await startNatsServer();
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-relay-'));
  const log = await LevelDbEventLog.open({ dir, node: 'bench' });
  let relay: NatsRelay | undefined;
  try {
    for (let seed = 1; log.head() < events; seed++) {
      await Promise.all(
        generateScenario({ pods: 200, seed }).map((a) => log.append(`${a.stream}-${seed}`, a.expected, a.events)),
      );
    }
    const head = log.head();
    const started = performance.now();
    relay = await NatsRelay.start({
      log,
      servers: server.url,
      node: 'bench',
      replicas: 1,
      duplicateWindowMs: 10 * 60_000,
      maxAgeMs: 0,
      logger: pino({ level: 'warn' }),
    });
    while (relay.status().cursor < head) await new Promise((r) => setTimeout(r, 5));
    const seconds = (performance.now() - started) / 1000;
    return { eventsPerS: head / seconds, events: head };
  } finally {
    await relay?.stop();
    await log.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
