import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Ledger } from '../../commands/ledger.js';
import type { SagaObserver } from '../../commands/saga.js';
import type { LedgerEvent } from '../../domain/events.js';
import { parseStream } from '../../domain/ids.js';
import type { RelayStatus } from '../bus/nats-relay-options.js';
import { afterCommit } from '../eventlog/after-commit.js';
import type { BatchStats } from '../eventlog/base-event-log.js';

/*
 * What cri-ledger itself does, as an SRE graphs it: sagas and their steps, the log's
 * appends and fsyncs, the relay's lag, the projections' sizes, containerd's reachability,
 * and the process (prom-client's defaults). Counters of what happened (compensations,
 * stalls, retries served, events by type) come from the committed events, so they count
 * exactly what the log holds; gauges are read when scraped. Labels are operations, steps,
 * states and event types: bounded sets, no container or pod id.
 */

export const PREFIX = 'cri_ledger_';
/** Seconds: a pure step takes microseconds, a snapshot or task start tens of milliseconds. */
export const STEP_BUCKETS_S = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60];
/** Seconds: a synced LevelDB write takes about 0.3 ms here. */
const LOG_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

export interface LedgerMetricsSources {
  ledger: Ledger;
  ledgerDir: string;
  relay?: { status(): RelayStatus };
  /** containerd's reachability as the service last saw it. */
  containerdUp?: () => Promise<boolean>;
}

/** The saga observer and log batch hook to give the commands and the log, and a way to attach the rest. */
export interface LedgerMetrics {
  saga: SagaObserver;
  onBatch(stats: BatchStats): void;
  /** Starts counting committed events and reading gauges from these sources. */
  attach(sources: LedgerMetricsSources): void;
}

export function ledgerMetrics(registry: Registry): LedgerMetrics {
  const reg = { registers: [registry] };
  collectDefaultMetrics({ register: registry });
  const sagaSeconds = new Histogram({
    name: `${PREFIX}saga_duration_seconds`,
    help: 'Whole sagas (CreateContainer, RunPodSandbox), by how they ended.',
    labelNames: ['operation', 'outcome'],
    buckets: STEP_BUCKETS_S,
    ...reg,
  });
  const stepSeconds = new Histogram({
    name: `${PREFIX}saga_step_duration_seconds`,
    help: "Each saga step, including its events' append.",
    labelNames: ['operation', 'step', 'ok'],
    buckets: STEP_BUCKETS_S,
    ...reg,
  });
  const appendSeconds = new Histogram({
    name: `${PREFIX}log_append_duration_seconds`,
    help: 'From an append to its durable commit, group commit wait included.',
    buckets: LOG_BUCKETS_S,
    ...reg,
  });
  const fsyncSeconds = new Histogram({
    name: `${PREFIX}log_fsync_duration_seconds`,
    help: "One batch's synced LevelDB write.",
    buckets: LOG_BUCKETS_S,
    ...reg,
  });
  const batchEvents = new Histogram({
    name: `${PREFIX}log_batch_events`,
    help: 'Events per synced batch (group commit).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
    ...reg,
  });
  const events = new Counter({
    name: `${PREFIX}events_total`,
    help: 'Events committed, by type.',
    labelNames: ['type'],
    ...reg,
  });
  const compensations = new Counter({
    name: `${PREFIX}compensations_total`,
    help: 'Sagas undone after a step failed (Compensated events).',
    labelNames: ['operation', 'failed_step'],
    ...reg,
  });
  const stalls = new Counter({
    name: `${PREFIX}stalls_total`,
    help: "Sagas still running past their caller's deadline (OperationStalled events).",
    labelNames: ['operation', 'step'],
    ...reg,
  });
  const retries = new Counter({
    name: `${PREFIX}retries_served_total`,
    help: 'Retried requests answered from the ledger instead of being run again (RetryServed events).',
    labelNames: ['operation'],
    ...reg,
  });
  const onEvent = (e: LedgerEvent): void => {
    events.inc({ type: e.type });
    if (e.type === 'Compensated') compensations.inc({ operation: e.data.operation, failed_step: e.data.failedStep });
    else if (e.type === 'OperationStalled') stalls.inc({ operation: e.data.operation, step: e.data.step });
    else if (e.type === 'RetryServed')
      retries.inc({ operation: parseStream(e.stream).kind === 'sandbox' ? 'RunPodSandbox' : 'CreateContainer' });
  };
  return {
    saga: {
      step: (operation, step, ms, ok) => stepSeconds.observe({ operation, step, ok: String(ok) }, ms / 1000),
      ended: (operation, ms, outcome) => sagaSeconds.observe({ operation, outcome }, ms / 1000),
    },
    onBatch(stats) {
      fsyncSeconds.observe(stats.writeMs / 1000);
      batchEvents.observe(stats.events);
      for (const ms of stats.appendMs) appendSeconds.observe(ms / 1000);
    },
    attach(sources) {
      sources.ledger.log.onCommit(
        afterCommit((committed) => {
          for (const e of committed) onEvent(e);
        }),
      );
      stateGauges(registry, sources);
    },
  };
}

/** Gauges read at scrape time from the projections, the log, the relay and containerd. */
function stateGauges(registry: Registry, s: LedgerMetricsSources): void {
  const reg = { registers: [registry] };
  const p = s.ledger.projections;
  const byState = <T extends { state: string }>(docs: Iterable<T>, states: readonly string[]): Map<string, number> => {
    const counts = new Map(states.map((state) => [state, 0]));
    for (const d of docs) counts.set(d.state, (counts.get(d.state) ?? 0) + 1);
    return counts;
  };
  new Gauge({
    name: `${PREFIX}containers`,
    help: 'Containers the service holds, by state.',
    labelNames: ['state'],
    ...reg,
    collect() {
      for (const [state, n] of byState(p.containers.values(), ['CREATING', 'CREATED', 'RUNNING', 'EXITED']))
        this.set({ state }, n);
    },
  });
  new Gauge({
    name: `${PREFIX}pod_sandboxes`,
    help: 'Pod sandboxes the service holds, by state.',
    labelNames: ['state'],
    ...reg,
    collect() {
      for (const [state, n] of byState(p.sandboxes.values(), ['CREATING', 'READY', 'NOTREADY'])) this.set({ state }, n);
    },
  });
  new Gauge({
    name: `${PREFIX}names_held`,
    help: 'CRI names reserved, by kind.',
    labelNames: ['kind'],
    ...reg,
    collect() {
      this.set({ kind: 'container' }, p.containerNames.size);
      this.set({ kind: 'sandbox' }, p.sandboxNames.size);
    },
  });
  gauge(registry, 'images', 'Images the service knows.', () => p.images.size);
  gauge(registry, 'operations_in_flight', 'Sagas begun and not yet ended.', () => p.operations.size);
  gauge(registry, 'log_head_seq', "The log's last committed seq.", () => s.ledger.log.head());
  gauge(registry, 'log_disk_bytes', "Bytes of the ledger's LevelDB directory.", () => directoryBytes(s.ledgerDir));
  if (s.containerdUp) {
    const up = s.containerdUp;
    gauge(registry, 'containerd_up', '1 when containerd answered the last health probe.', async () =>
      (await up()) ? 1 : 0,
    );
  }
  relayGauges(registry, s);
}

function gauge(registry: Registry, name: string, help: string, read: () => number | Promise<number>): void {
  new Gauge({
    name: `${PREFIX}${name}`,
    help,
    registers: [registry],
    async collect() {
      this.set(await read());
    },
  });
}

function relayGauges(registry: Registry, s: LedgerMetricsSources): void {
  const relay = s.relay;
  gauge(registry, 'relay_enabled', '1 when a NATS URL is configured.', () => (relay ? 1 : 0));
  if (!relay) return;
  gauge(registry, 'relay_connected', '1 while the relay is connected to NATS.', () =>
    relay.status().connected ? 1 : 0,
  );
  gauge(registry, 'relay_lag_events', 'Events the log holds that JetStream has not acked.', () => relay.status().lag);
  gauge(registry, 'relay_lag_seconds', 'Age of the oldest event JetStream has not acked (0 when none).', async () => {
    const { cursor, lag } = relay.status();
    if (lag === 0) return 0;
    for await (const e of s.ledger.log.readAll({ fromSeq: cursor + 1, toSeq: cursor + 1 }))
      return Math.max(0, (Date.now() - Date.parse(e.at)) / 1000);
    return 0;
  });
  let seen = 0;
  new Counter({
    name: `${PREFIX}relay_errors_total`,
    help: 'Relay failures (connect, stream check, publish) since start.',
    registers: [registry],
    collect() {
      const now = relay.status().errors ?? 0;
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isFile()) total += (await stat(join(dir, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
