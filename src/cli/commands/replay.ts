import type { Command } from 'commander';
import { Projections } from '../../projections/projections.js';
import { withConfigOptions } from '../options.js';
import type { EventFilter } from '../sources/event-source.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { formatInFlight } from './support/in-flight.js';
import { print } from './support/output.js';
import { startProgress } from './support/progress.js';
import { shortId } from './support/summary.js';
import { formatTable } from './support/table.js';
import { formatDuration, parseUntilArg } from './support/time.js';
import { requireOneNode } from './support/nodes.js';

interface ReplayOptions {
  until: string;
  json?: boolean;
}

export function registerReplay(program: Command): void {
  const command = program
    .command('replay')
    .description(
      'show the projections (containers, sandboxes, names, operations in flight) as they stood at a point in the log',
    )
    .requiredOption('--until <seq|time>', 'a seq (e.g. 1200), or a time: RFC 3339, or a duration ago (10m)')
    .option('--json', 'print the projections snapshot as JSON');
  withSourceOptions(withConfigOptions(command)).action((options: ReplayOptions, cmd: Command) =>
    runReplay(options, cmd),
  );
}

async function runReplay(options: ReplayOptions, cmd: Command): Promise<void> {
  const bound = parseUntilArg(options.until);
  const filter: EventFilter = 'toSeq' in bound ? { toSeq: bound.toSeq } : { until: bound.until };
  await withSource(cmd, async (source) => {
    requireOneNode(source, 'replay');
    const projections = new Projections();
    const total = 'toSeq' in bound ? Math.min(bound.toSeq, await source.size()) : await source.size();
    const progress = startProgress('replaying', total);
    let lastAt: string | undefined;
    let n = 0;
    try {
      for await (const { event } of source.readEvents(filter)) {
        projections.apply(event);
        lastAt = event.at;
        progress.update(++n);
      }
    } finally {
      progress.stop();
    }
    if (options.json) {
      print(JSON.stringify(projections.snapshot(), null, 2));
      return;
    }
    // Ages are measured at the replay point, not now: "how long had it been running then".
    const at = 'until' in bound ? bound.until : lastAt;
    printProjections(projections, at);
  });
}

function printProjections(p: Projections, at: string | undefined): void {
  const atMs = at ? Date.parse(at) : Date.now();
  const age = (since: string): string => formatDuration(Math.max(0, atMs - Date.parse(since)));
  print(`as of seq ${p.position()}${at ? ` (${at})` : ''}`);

  section(`CONTAINERS (${p.containers.size})`, [
    ['ID', 'NAME', 'STATE', 'SANDBOX', 'IMAGE', 'LAST EVENT', 'SEQ'],
    ...[...p.containers.values()]
      .sort((a, b) => a.reservedAt.localeCompare(b.reservedAt) || a.id.localeCompare(b.id))
      .map((c) => [
        shortId(c.id),
        c.name,
        c.state + (c.state === 'EXITED' && c.exitCode !== undefined ? `(${c.exitCode})` : ''),
        shortId(c.sandboxId),
        c.image,
        c.lastEvent.type,
        String(c.lastEvent.seq),
      ]),
  ]);
  section(`SANDBOXES (${p.sandboxes.size})`, [
    ['ID', 'NAME', 'STATE', 'IP', 'LAST EVENT', 'SEQ'],
    ...[...p.sandboxes.values()]
      .sort((a, b) => a.reservedAt.localeCompare(b.reservedAt) || a.id.localeCompare(b.id))
      .map((s) => [shortId(s.id), s.name, s.state, s.ip || '-', s.lastEvent.type, String(s.lastEvent.seq)]),
  ]);
  const names = [
    ...[...p.containerNames.values()].map((h) => ['container', h] as const),
    ...[...p.sandboxNames.values()].map((h) => ['sandbox', h] as const),
  ].sort(([, a], [, b]) => a.reservedSeq - b.reservedSeq);
  section(`NAMES HELD (${names.length})`, [
    ['NAME', 'KIND', 'HOLDER', 'SINCE SEQ', 'HELD FOR', 'CORRELATION'],
    ...names.map(([kind, h]) => [
      h.name,
      kind,
      shortId(h.holderId),
      String(h.reservedSeq),
      age(h.reservedAt),
      h.correlationId,
    ]),
  ]);
  print();
  print(`OPERATIONS IN FLIGHT (${p.operations.size})`);
  if (p.operations.size > 0) {
    for (const line of formatInFlight(
      [...p.operations.values()].map((o) => ({ ...o, ageMs: Math.max(0, atMs - Date.parse(o.startedAt)) })),
    ))
      print(line);
  }
}

function section(title: string, [header, ...rows]: string[][]): void {
  print();
  print(title);
  if (rows.length === 0) return;
  for (const line of formatTable(
    header!.map((h) => ({ header: h, align: h.endsWith('SEQ') || h === 'HELD FOR' ? 'right' : 'left' })),
    rows,
  ))
    print(line);
}
