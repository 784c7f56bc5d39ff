import type { Command } from 'commander';
import { NotFoundError } from '../../domain/errors.js';
import { SAGA_BEGIN, SAGA_END } from '../../domain/events.js';
import { parseStream, resolveIdPrefix } from '../../domain/ids.js';
import { withConfigOptions } from '../options.js';
import type { EventSource, SourcedEvent } from '../sources/event-source.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { onOneNode } from './support/nodes.js';
import { note, print } from './support/output.js';
import { notInLocalLog, partlyPruned, prunedRecord, streamNote } from './support/pruned-notes.js';
import { pictureFormat, writePicture } from './support/pictures.js';
import { sessionRows, sessionStories } from './support/sessions.js';
import { shortId, summarize } from './support/summary.js';
import { formatTable } from './support/table.js';
import { formatDuration } from './support/time.js';

/** A container or sandbox the log has ever known, from its reservation event. */
interface Known {
  kind: 'container' | 'sandbox';
  id: string;
  stream: string;
  name: string;
  seq: number;
  /** A container's pod sandbox. */
  podId?: string;
  /** The publishing node, when the source reads several (NATS). */
  node?: string;
}

interface TimelineOptions {
  json?: boolean;
  format: string;
  output?: string;
}

export function registerTimeline(program: Command): void {
  const command = program
    .command('timeline')
    .description('every event of one container or sandbox, with the time each step took')
    .argument('<ref>', 'full id, unique id prefix, or full CRI name (also of removed or compensated ones)')
    .option('--json', 'print the events as their stored JSON, one per line')
    .option('--format <format>', 'text, or a picture: html (a page) or svg; a pod shows a lane per container', 'text')
    .option('--output <file>', 'write the picture to FILE instead of stdout');
  withSourceOptions(withConfigOptions(command)).action((ref: string, options: TimelineOptions, cmd: Command) =>
    runTimeline(ref, options, cmd),
  );
}

async function runTimeline(ref: string, options: TimelineOptions, cmd: Command): Promise<void> {
  const format = pictureFormat(options.format);
  await withSource(cmd, async (source) => {
    const { target, known } = await resolve(source, ref).catch(async (error: unknown) => {
      if (!(error instanceof NotFoundError)) throw error;
      // Retention may have removed the reservation but not yet the rest: show the rest.
      const partly = await partlyPruned(source, ref);
      if (partly) return { target: partly, known: [] };
      throw (await notInLocalLog(source, ref)) ?? error;
    });
    if (format !== 'text') {
      // A pod's picture has its containers' lanes too.
      const streams = [target.stream, ...known.filter((k) => k.podId === target.id).map((k) => k.stream)];
      const events = [];
      for await (const e of source.readEvents({ streams })) if (onNode(target, e)) events.push(e.event);
      await writePicture(events, {
        title: `${target.kind} ${target.name}`,
        subtitle: `${target.id} · ${events.length} events · from ${source.description}`,
        format,
        output: options.output,
      });
      return;
    }
    const events: SourcedEvent[] = [];
    for await (const e of source.readEvents({ streams: [target.stream] })) if (onNode(target, e)) events.push(e);
    if ((events[0]?.event.version ?? 0) !== 1) {
      const line = streamNote(target.kind, target.id, await prunedRecord(source, { streams: [target.stream] }));
      if (line) note(line);
    }
    if (options.json) {
      for (const e of events) print(e.json);
      return;
    }
    printTimeline(target, events);
  });
}

/** Whether `e` belongs to the target's node (always, when the source reads one node). */
function onNode(target: Known, e: SourcedEvent): boolean {
  return target.node === undefined || e.node === target.node;
}

/**
 * Finds what `ref` names by scanning the reservations in the log, not the projections,
 * so a container that was removed or compensated long ago still has a timeline. A name
 * reused by a later attempt resolves to the newest holder; the others are mentioned.
 */
async function resolve(source: EventSource, ref: string): Promise<{ target: Known; known: Known[] }> {
  const known: Known[] = [];
  for await (const { event, node } of source.readEvents({ types: [...SAGA_BEGIN] })) {
    if (event.type !== 'NameReserved' && event.type !== 'SandboxReserved') continue;
    const { kind, id } = parseStream(event.stream);
    if (kind !== 'container' && kind !== 'sandbox') continue;
    const podId = event.type === 'NameReserved' ? { podId: event.data.sandboxId } : {};
    known.push({
      kind,
      id,
      stream: event.stream,
      name: event.data.name,
      seq: event.seq,
      ...podId,
      ...(source.manyNodes && node !== undefined ? { node } : {}),
    });
  }
  const byName = known.filter((k) => k.name === ref);
  onOneNode(ref, byName);
  if (byName.length > 0) {
    const newest = byName[byName.length - 1]!;
    if (byName.length > 1) {
      const others = byName
        .slice(0, -1)
        .map((k) => shortId(k.id))
        .join(', ');
      note(
        `note: ${ref} was also held by ${others}; showing the newest, ${shortId(newest.id)} (pass an id to see another)`,
      );
    }
    return { target: newest, known };
  }
  if (/^[0-9a-f]+$/.test(ref)) {
    const id = resolveIdPrefix(ref, new Set(known.map((k) => k.id)), 'ref');
    const found = id === undefined ? undefined : known.find((k) => k.id === id);
    onOneNode(
      ref,
      known.filter((k) => k.id === id),
    );
    if (found) return { target: found, known };
  }
  throw new NotFoundError('container or sandbox', ref);
}

function printTimeline(target: Known, events: SourcedEvent[]): void {
  print(`${target.kind} ${target.id}`);
  print(`name      ${target.name}`);
  if (target.node !== undefined) print(`node      ${target.node}`);
  print('');
  let previous: number | undefined;
  const rows = events.map(({ seq, event }) => {
    const at = Date.parse(event.at);
    const step = previous === undefined ? 0 : at - previous;
    previous = at;
    return [String(seq), event.at, `+${formatDuration(step)}`, event.type, event.correlationId, summarize(event)];
  });
  const columns = [
    { header: 'SEQ', align: 'right' as const },
    { header: 'TIME' },
    { header: 'STEP', align: 'right' as const },
    { header: 'TYPE' },
    { header: 'CORRELATION' },
    { header: 'SUMMARY' },
  ];
  for (const line of formatTable(columns, rows)) print(line);
  const first = events[0];
  const last = events[events.length - 1];
  if (!first || !last) return;
  const total = Date.parse(last.event.at) - Date.parse(first.event.at);
  const open =
    SAGA_BEGIN.has(first.event.type) &&
    !events.some((e) => SAGA_END.has(e.event.type) || e.event.type.endsWith('Removed'));
  print('');
  print(
    `total ${formatDuration(total)} over ${events.length} events (seq ${first.seq}..${last.seq}); last: ${last.event.type}${open ? ' (still in flight)' : ''}`,
  );
  printSessions(events);
}

/** Exec, Attach and PortForward sessions, start paired with end: who ran what, how long, how it ended. */
function printSessions(events: SourcedEvent[]): void {
  const stories = sessionStories(events.map((e) => e.event));
  if (stories.length === 0) return;
  print('');
  print(`SESSIONS (${stories.length})`);
  const columns = [
    { header: 'SESSION' },
    { header: 'KIND' },
    { header: 'CORRELATION' },
    { header: 'STARTED' },
    { header: 'DURATION', align: 'right' as const },
    { header: 'OUTCOME' },
    { header: 'BYTES' },
    { header: 'WHAT' },
  ];
  for (const line of formatTable(columns, sessionRows(stories, Date.now()))) print(line);
}
