import type { Command } from 'commander';
import type { LedgerEvent } from '../../domain/events.js';
import { withConfigOptions } from '../options.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { explain, RESERVATION_TYPES, reservations, resolveReference } from './support/explanation.js';
import { NotFoundError } from '../../domain/errors.js';
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
    for await (const { event } of source.readEvents({ types: [...RESERVATION_TYPES] })) scanned.push(event);
    const known = reservations(scanned);
    let resolved: ReturnType<typeof resolveReference>;
    try {
      resolved = resolveReference(known, ref);
    } catch (error) {
      throw (error instanceof NotFoundError && (await notInLocalLog(source, ref))) || error;
    }
    const { target, notes } = resolved;
    for (const line of notes) note(line);
    const events: LedgerEvent[] = [];
    for await (const { event } of source.readEvents({ streams: [target.stream] })) events.push(event);
    if ((events[0]?.version ?? 0) !== 1) {
      const line = streamNote(target.kind, target.id, await prunedRecord(source, { streams: [target.stream] }));
      if (line) note(line);
    }
    for (const line of explain({ target, events, known, source: source.description, nowMs: Date.now() })) print(line);
  });
}
