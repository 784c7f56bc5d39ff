import type { Command } from 'commander';
import type { LedgerEvent } from '../../domain/events.js';
import { withConfigOptions } from '../options.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { explain, RESERVATION_TYPES, reservations, resolveReference } from './support/explanation.js';
import { NotFoundError } from '../../domain/errors.js';
import { onOneNode } from './support/nodes.js';
import { note, print } from './support/output.js';
import { notInLocalLog, prunedRecord, streamNote } from './support/pruned-notes.js';

export function registerExplain(program: Command): void {
  const command = program
    .command('explain')
    .description(
      'what the log says about one container or sandbox, in plain words: who holds its name, how it was created, stalls, retries, why it exited or was undone',
    )
    .argument(
      '<ref>',
      'full id, unique id prefix, full CRI name, or the short metadata name if only one full name has it',
    );
  withSourceOptions(withConfigOptions(command)).action((ref: string, _options: object, cmd: Command) =>
    runExplain(ref, cmd),
  );
}

async function runExplain(ref: string, cmd: Command): Promise<void> {
  await withSource(cmd, async (source) => {
    // Reservations and their endings come from a scan of the whole log, not from the
    // projections, so a container removed or compensated long ago is explained too.
    const scanned: LedgerEvent[] = [];
    const nodesOf = new Map<string, Set<string>>();
    for await (const { event, node } of source.readEvents({ types: [...RESERVATION_TYPES] })) {
      scanned.push(event);
      if (node !== undefined) nodesOf.set(event.stream, (nodesOf.get(event.stream) ?? new Set()).add(node));
    }
    const known = reservations(scanned);
    let resolved: ReturnType<typeof resolveReference>;
    try {
      resolved = resolveReference(known, ref);
    } catch (error) {
      throw (error instanceof NotFoundError && (await notInLocalLog(source, ref))) || error;
    }
    const { target, notes } = resolved;
    for (const line of notes) note(line);
    // Across nodes, the target is the stream on the node that reserved it.
    const nodes = [...(nodesOf.get(target.stream) ?? [])].map((node) => ({ node }));
    onOneNode(ref, nodes);
    const node = source.manyNodes ? nodes[0]?.node : undefined;
    const events: LedgerEvent[] = [];
    for await (const e of source.readEvents({ streams: [target.stream] })) {
      if (node === undefined || e.node === node) events.push(e.event);
    }
    if ((events[0]?.version ?? 0) !== 1) {
      const line = streamNote(target.kind, target.id, await prunedRecord(source, { streams: [target.stream] }));
      if (line) note(line);
    }
    const lines = explain({ target, events, known, source: source.description, nowMs: Date.now() });
    if (node !== undefined) lines.splice(1, 0, `on node ${node}.`);
    for (const line of lines) print(line);
  });
}
