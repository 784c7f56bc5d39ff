import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import { withBoundedHeapGrowth } from '../src/adapters/memory/heap-growth.js';
import { Ledger } from '../src/commands/ledger.js';

/*
 * Rebuilds the projections from the log in argv[2] and prints {events, ms, maxRssMb}.
 * A child process of its own, so peak RSS measures the rebuild and not the generator.
 */
const dir = process.argv[2]!;
const log = await LevelDbEventLog.open({ dir, node: 'bench' });
const started = performance.now();
// As the service loads its projections at startup (serve.ts).
const ledger = await withBoundedHeapGrowth(() => Ledger.load(log));
const ms = performance.now() - started;
const events = ledger.projections.position();
await log.close();
const maxRssMb = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify({ events, ms, maxRssMb, containers: ledger.projections.containers.size }));
