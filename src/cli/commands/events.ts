import type { Command } from 'commander';
import { InvalidArgumentError } from '../../domain/errors.js';
import { EVENT_TYPES } from '../../domain/events.js';
import { withConfigOptions } from '../options.js';
import type { EventFilter, SourcedEvent } from '../sources/event-source.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { parseStream } from '../../domain/ids.js';
import { note, print } from './support/output.js';
import { prunedRecord, rangeNote, streamNote } from './support/pruned-notes.js';
import { shortStream, summarize } from './support/summary.js';
import { StreamingTable, type Column } from './support/table.js';
import { parseSeqArg, parseTimeArg } from './support/time.js';

interface EventsOptions {
  from?: string;
  since?: string;
  follow?: boolean;
  stream: string[];
  type: string[];
  json?: boolean;
}

const COLUMNS: Column[] = [
  { header: 'SEQ', align: 'right', width: 4 },
  { header: 'TIME', width: 24 },
  { header: 'STREAM', width: 22 },
  { header: 'VER', align: 'right' },
  { header: 'TYPE', width: 16 },
  { header: 'CORRELATION', width: 12 },
  { header: 'SUMMARY' },
];

const NODE_COLUMN: Column = { header: 'NODE', width: 10 };

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerEvents(program: Command): void {
  const command = program
    .command('events')
    .description('print events from the log, oldest first')
    .option('--from <seq>', 'start at this seq')
    .option('--since <time>', 'only events recorded at or after TIME (RFC 3339, or a duration ago: 10m)')
    .option('-f, --follow', 'after the last event, keep printing new ones until interrupted')
    .option('--stream <stream>', 'only this stream, e.g. container-<id> (repeatable)', collect, [])
    .option('--type <type>', 'only this event type, e.g. Compensated (repeatable)', collect, [])
    .option('--json', 'print each event as its stored JSON, one per line (NDJSON)');
  withSourceOptions(withConfigOptions(command)).action((options: EventsOptions, cmd: Command) =>
    runEvents(options, cmd),
  );
}

async function runEvents(options: EventsOptions, cmd: Command): Promise<void> {
  const filter: EventFilter = {};
  if (options.from !== undefined) filter.fromSeq = parseSeqArg(options.from, '--from');
  if (options.since !== undefined) filter.since = parseTimeArg(options.since, '--since');
  if (options.stream.length > 0) filter.streams = options.stream;
  if (options.type.length > 0) filter.types = options.type;
  // Checked here too so the error names the flag, not the API field behind it.
  for (const type of options.type) {
    if (!(EVENT_TYPES as readonly string[]).includes(type)) {
      throw new InvalidArgumentError('--type', `unknown event type "${type}" (known: ${EVENT_TYPES.join(', ')})`);
    }
  }
  for (const stream of options.stream) {
    if (!/^(container|sandbox|image)-./.test(stream))
      throw new InvalidArgumentError('--stream', `"${stream}" is not <container|sandbox|image>-<id>`);
  }

  await withSource(cmd, async (source) => {
    // Said first, on stderr: what of the asked range retention removed, and where it is.
    const report = await prunedRecord(source, {
      ...(filter.fromSeq === undefined ? {} : { fromSeq: filter.fromSeq }),
      ...(filter.streams ? { streams: filter.streams } : {}),
    });
    const notes = filter.streams
      ? (report?.streamsAsked ?? []).map((t) => {
          const { kind, id } = parseStream(t.stream);
          return streamNote(kind, id, { ...report!, streamsAsked: [t] });
        })
      : [rangeNote(report)];
    for (const line of notes) if (line) note(line);
    // Following prints each event as it comes; a finite read sizes its columns first.
    // Events of several nodes say which node published each (the envelope's node too, in --json).
    const nodes = source.manyNodes === true;
    const table = new StreamingTable(nodes ? [NODE_COLUMN, ...COLUMNS] : COLUMNS, print, options.follow ? 1 : 200);
    const show = (e: SourcedEvent): void => {
      if (options.json) print(e.json);
      else {
        const ev = e.event;
        table.row([
          ...(nodes ? [e.node ?? ev.node] : []),
          String(e.seq),
          ev.at,
          shortStream(ev.stream),
          String(ev.version),
          ev.type,
          ev.correlationId,
          summarize(ev),
        ]);
      }
    };
    if (!options.follow) {
      for await (const e of source.readEvents(filter)) show(e);
      if (!options.json) table.flush();
      return;
    }
    const stop = new AbortController();
    const interrupt = (): void => stop.abort();
    process.once('SIGINT', interrupt);
    process.once('SIGTERM', interrupt);
    try {
      if (!options.json) table.flush();
      for await (const e of source.follow(filter, stop.signal)) show(e);
      if (!stop.signal.aborted) note(`cri-ledger: ${source.description} ended the follow`);
    } finally {
      process.off('SIGINT', interrupt);
      process.off('SIGTERM', interrupt);
    }
  });
}
