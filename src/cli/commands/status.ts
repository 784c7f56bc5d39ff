import type { Command } from 'commander';
import { formatDurationMs } from '../../adapters/bus/duration-format.js';
import type { StreamLimits } from '../../adapters/bus/nats-stream-config.js';
import { withConfigOptions } from '../options.js';
import type { InFlight, LedgerStatus, PrunedReport, StreamStatus } from '../sources/event-source.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { formatInFlight } from './support/in-flight.js';
import { print } from './support/output.js';
import { startProgress } from './support/progress.js';
import { formatDuration } from './support/time.js';

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('where the log, the NATS relay and the projections stand (or the JetStream stream, with --nats)')
    .option('--json', 'print the status as JSON');
  withSourceOptions(withConfigOptions(command)).action((options: { json?: boolean }, cmd: Command) =>
    runStatus(options, cmd),
  );
}

async function runStatus(options: { json?: boolean }, cmd: Command): Promise<void> {
  await withSource(cmd, async (source) => {
    let progress: ReturnType<typeof startProgress> | undefined;
    const status = await source.status((done, total) => {
      progress ??= startProgress('loading', total);
      progress.update(done);
    });
    (progress as ReturnType<typeof startProgress> | undefined)?.stop();
    const pruned = status.kind === 'ledger' ? await source.pruned?.({}) : undefined;
    if (options.json) print(JSON.stringify(pruned ? { ...status, retention: pruned } : status, null, 2));
    else if (status.kind === 'ledger') printLedger(status, pruned);
    else printStream(status);
  });
}

function fields(rows: Array<[string, string]>): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [key, value] of rows) print(`${key.padEnd(width)}  ${value}`);
}

/** What retention removed from the local log, and the running service's rules. */
function retentionLine(p: PrunedReport): string {
  const rules = [
    p.maxAgeMs > 0 ? `max age ${formatDuration(p.maxAgeMs)}` : '',
    p.maxBytes > 0 ? `max ${(p.maxBytes / 1024 / 1024).toFixed(0)} MiB` : '',
  ].filter(Boolean);
  const removed = p.pruned
    ? `${p.events} events of ${p.streams} ended streams removed, ${p.firstPrunedAt}..${p.lastPrunedAt} (NATS holds them: --nats)`
    : 'nothing removed';
  const policy = !p.policyKnown ? 'rules unknown (service stopped)' : rules.length > 0 ? rules.join(', ') : 'off';
  return `${policy}; ${removed}`;
}

function printLedger(s: LedgerStatus, pruned?: PrunedReport): void {
  const r = s.relay;
  let relay: string;
  if (!r.running) relay = `service stopped; cursor ${r.cursor}, lag ${r.lag}`;
  else if (!r.enabled) relay = `off (no NATS URL); cursor ${r.cursor}, lag ${r.lag}`;
  else {
    const servers = r.servers && r.servers.length > 1 ? ` (one of ${r.servers.length} servers)` : '';
    const link = r.connected ? `connected${r.server ? ` to ${r.server}${servers}` : ''}` : 'DISCONNECTED';
    relay = `on${r.stream ? ` (stream ${r.stream})` : ''}, ${link}; cursor ${r.cursor}, lag ${r.lag}`;
    if (r.lastPublishAt) relay += `, last publish ${r.lastPublishAt}`;
  }
  const rows: Array<[string, string]> = [
    ['source', s.source],
    ['node', s.node],
    ['head', s.head === 0 ? '0 (empty log)' : `${s.head}${s.headAt ? ` (${s.headAt})` : ''}`],
    ['relay', relay],
  ];
  if (pruned) rows.push(['retention', retentionLine(pruned)]);
  if (r.lastError) rows.push(['relay error', r.lastError]);
  if (r.streamLimits) rows.push(['stream limits', formatLimits(r.streamLimits)]);
  if (r.resendHorizonMs) rows.push(['re-send horizon', `${formatDurationMs(r.resendHorizonMs)} (worst case)`]);
  for (const warning of r.warnings ?? []) rows.push(['WARNING', warning]);
  if (s.startedAt) rows.push(['started', s.startedAt]);
  rows.push(
    ['containers', String(s.counts.containers)],
    ['sandboxes', String(s.counts.sandboxes)],
    [
      'names held',
      `${s.counts.containerNames + s.counts.sandboxNames} (${s.counts.containerNames} container, ${s.counts.sandboxNames} sandbox)`,
    ],
    ['in flight', String(s.counts.operationsInFlight)],
    ['open sessions', String(s.counts.openSessions)],
  );
  fields(rows);
  printInFlight(s.operations);
}

/** `replicas 3, max age 0 (unlimited), max bytes 1073741824, duplicate window 10m`. */
export function formatLimits(l: StreamLimits): string {
  const age = l.maxAgeMs === 0 ? '0 (unlimited)' : formatDurationMs(l.maxAgeMs);
  const bytes = l.maxBytes === 0 ? '0 (unlimited)' : String(l.maxBytes);
  return `replicas ${l.replicas}, max age ${age}, max bytes ${bytes}, duplicate window ${formatDurationMs(l.duplicateWindowMs)}`;
}

function printInFlight(operations: InFlight[]): void {
  if (operations.length === 0) return;
  print('');
  print(`OPERATIONS IN FLIGHT (${operations.length})`);
  for (const line of formatInFlight(operations)) print(line);
}

function printStream(s: StreamStatus): void {
  const rows: Array<[string, string]> = [
    ['source', s.source],
    ['stream', s.stream],
  ];
  if (s.server) rows.push(['server', s.server]);
  rows.push(['messages', `${s.messages} (${s.bytes} bytes, all nodes)`]);
  if (s.first) rows.push(['first', `stream seq ${s.first.seq} (${s.first.at})`]);
  if (s.last) rows.push(['last', `stream seq ${s.last.seq} (${s.last.at})`]);
  if (s.limits) rows.push(['limits', formatLimits(s.limits)]);
  if (s.cluster) {
    const replicas = s.cluster.replicas
      .map((r) => `${r.name}${r.name === s.cluster?.leader ? ' (leader)' : ''} ${replicaState(r)}`)
      .join(', ');
    rows.push(['replicas', replicas || '(none reported)']);
  }
  if (s.resendHorizonMs) {
    rows.push(['re-send horizon', `${formatDurationMs(s.resendHorizonMs)} (a relay's worst case, default settings)`]);
  }
  for (const warning of s.warnings ?? []) rows.push(['WARNING', warning]);
  if (s.nodes) {
    rows.push(['nodes', `${s.node}: ${s.nodeMessages} messages from ${s.nodes.length} nodes`]);
    for (const n of s.nodes) {
      const head = n.head ? `, head ledger seq ${n.head.seq} (${n.head.at})` : '';
      rows.push([`  ${n.node}`, `${n.messages} messages${head}`]);
    }
  } else {
    rows.push(
      ['node', s.node],
      ['subjects', `${s.nodeSubjects}: ${s.nodeMessages} messages on ${s.nodeSubjectCount} subjects`],
    );
    if (s.nodeHead) rows.push(['node head', `ledger seq ${s.nodeHead.seq} (${s.nodeHead.at})`]);
  }
  fields(rows);
}

function replicaState(r: { current: boolean; lag?: number; offline?: boolean }): string {
  if (r.offline) return 'offline';
  return r.current ? 'current' : `behind${r.lag !== undefined ? ` by ${r.lag}` : ''}`;
}
