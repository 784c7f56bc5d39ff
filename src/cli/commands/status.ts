import type { Command } from 'commander';
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
    relay = `on${r.stream ? ` (stream ${r.stream})` : ''}, ${r.connected ? 'connected' : 'DISCONNECTED'}; cursor ${r.cursor}, lag ${r.lag}`;
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
    ['messages', `${s.messages} (${s.bytes} bytes, all nodes)`],
  ];
  if (s.first) rows.push(['first', `stream seq ${s.first.seq} (${s.first.at})`]);
  if (s.last) rows.push(['last', `stream seq ${s.last.seq} (${s.last.at})`]);
  rows.push(
    ['node', s.node],
    ['subjects', `${s.nodeSubjects}: ${s.nodeMessages} messages on ${s.nodeSubjectCount} subjects`],
  );
  if (s.nodeHead) rows.push(['node head', `ledger seq ${s.nodeHead.seq} (${s.nodeHead.at})`]);
  fields(rows);
}
