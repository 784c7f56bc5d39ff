import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Level } from 'level';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import { container, ev, streams } from '../test/support/fixtures.js';
import { generateScenario } from '../test/support/scenario.js';
import { benchRelay } from './relay.js';
import { percentile, report, type Row } from './table.js';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

async function withLog<T>(body: (log: LevelDbEventLog, dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-'));
  const log = await LevelDbEventLog.open({ dir, node: 'bench' });
  try {
    return await body(log, dir);
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One writer, one event per append, each synced before the next starts. The machine's
 * dirty pages are flushed first (the build just wrote dist/, and an fsync right after
 * that waits for the filesystem journal to take it too), and the first appends warm up.
 */
async function appendSingle(count: number, warmup = 200): Promise<number[]> {
  await run('sync');
  return withLog(async (log) => {
    const times: number[] = [];
    for (let i = -warmup; i < count; i++) {
      const c = container(`single-${i}`);
      const started = performance.now();
      await log.append(streams.container(c), 0, [ev.nameReserved(c)]);
      if (i >= 0) times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b);
  });
}

/** The floor under a single append: one raw synced LevelDB batch of two ~600-byte puts. */
async function rawSyncBatch(count: number): Promise<number[]> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-raw-'));
  const db = new Level<string, string>(dir);
  await db.open();
  try {
    const value = 'x'.repeat(600);
    const times: number[] = [];
    for (let i = -200; i < count; i++) {
      const started = performance.now();
      await db.batch(
        [
          { type: 'put', key: `e!${i}`, value },
          { type: 'put', key: `s!${i}`, value },
        ],
        { sync: true },
      );
      if (i >= 0) times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b);
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** `writers` appenders in parallel, `perAppend` events per append, for `rounds` appends each. */
async function appendConcurrent(
  writers: number,
  perAppend: number,
  rounds: number,
): Promise<{ eventsPerS: number; batches: number }> {
  return withLog(async (log) => {
    let batches = 0;
    log.onCommit(() => batches++);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let r = 0; r < rounds; r++) {
          const c = container(`w${w}-r${r}`);
          const events = [
            ev.nameReserved(c),
            ev.specGenerated(),
            ev.snapshotPrepared(c),
            ev.containerCreated(),
            ev.containerStarted(),
          ].slice(0, perAppend);
          await log.append(streams.container(c), 0, events);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    return { eventsPerS: log.head() / seconds, batches };
  });
}

/**
 * Writes a generated node history of at least `target` events into `dir`. A real node
 * churns: kubelet removes pods and their containers, so few of a long history's pods
 * are still live. `teardownRate` is the share of pods that are gone by the end.
 */
async function generateLog(dir: string, target: number, teardownRate: number): Promise<number> {
  const log = await LevelDbEventLog.open({ dir, node: 'bench' });
  try {
    let seed = 1;
    while (log.head() < target) {
      // Fire a chunk of appends without waiting: they queue in order, so expected
      // versions hold, and group commit writes them as a few large synced batches.
      const appends = generateScenario({ pods: 400, seed: seed++, teardownRate }).map((a) => {
        const stream = `${a.stream}-${seed}`;
        return log.append(stream, a.expected, a.events);
      });
      await Promise.all(appends);
    }
    return log.head();
  } finally {
    await log.close();
  }
}

async function rebuild(
  events: number,
  teardownRate: number,
): Promise<{ events: number; ms: number; maxRssMb: number; containers: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-rebuild-'));
  try {
    const generated = await generateLog(dir, events, teardownRate);
    const { stdout } = await run(process.execPath, [join(HERE, 'rebuild-child.js'), dir], { maxBuffer: 1 << 20 });
    const result = JSON.parse(stdout) as { events: number; ms: number; maxRssMb: number; containers: number };
    if (result.events !== generated) throw new Error(`rebuild saw ${result.events} events, the log holds ${generated}`);
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runLedgerBench(args: string[]): Promise<void> {
  const rebuildEvents = flag(args, 'events', 1_000_000);
  const relayEvents = flag(args, 'relay-events', 50_000);
  const rows: Row[] = [];

  await run('sync');
  const raw = await rawSyncBatch(2_000);
  rows.push({ metric: 'leveldb_raw_sync_batch_p50_ms', value: percentile(raw, 50), unit: 'ms' });
  const single = await appendSingle(2_000);
  rows.push({ metric: 'append_sync_single_p50_ms', value: percentile(single, 50), unit: 'ms', target: '<= 0.5' });
  rows.push({ metric: 'append_sync_single_p99_ms', value: percentile(single, 99), unit: 'ms' });

  const concurrent = await appendConcurrent(64, 5, 100);
  rows.push({
    metric: 'append_sync_concurrent_events_per_s',
    value: concurrent.eventsPerS,
    unit: 'events/s',
    target: '>= 20,000',
  });
  rows.push({
    metric: 'append_sync_concurrent_events_per_batch',
    value: (64 * 5 * 100) / concurrent.batches,
    unit: 'events',
  });

  for (const [suffix, teardownRate] of [
    ['', 0.99],
    ['_half_live', 0.5],
  ] as const) {
    const result = await rebuild(rebuildEvents, teardownRate);
    rows.push({ metric: `rebuild${suffix}_events`, value: result.events, unit: 'events' });
    rows.push({ metric: `rebuild${suffix}_live_containers`, value: result.containers, unit: 'containers' });
    rows.push({
      metric: `rebuild${suffix}_events_per_s`,
      value: result.events / (result.ms / 1000),
      unit: 'events/s',
      target: '>= 100,000',
    });
    rows.push({ metric: `rebuild${suffix}_peak_rss_mb`, value: result.maxRssMb, unit: 'MB', target: '< 300' });
  }

  if (!args.includes('--skip-relay')) {
    const relay = await benchRelay(relayEvents);
    rows.push({ metric: 'relay_events_per_s', value: relay.eventsPerS, unit: 'events/s', target: '>= 10,000' });
  }
  report('ledger', rows, { measured_at: new Date().toISOString(), node: process.version });
}
