import { CriLedgerError } from '../domain/errors.js';
import { Projections, type AppliedEvent, type ModelName } from './projections.js';

/*
 * A snapshot of the projections: every read model's documents as they stood after the
 * event at `seq`, so a start can load it and replay only the events after it. This file
 * is the format, without I/O; the bytes' checksum and where they are kept belong to the
 * store adapter (src/adapters/snapshots).
 *
 *   line 1     {"format":"cri-ledger-projections","schema":1,"seq":N,"eventId":"...","at":"...","counts":{...}}
 *   line 2..   ["<model>","<key>",<document>]        one line per document, models in a fixed order
 *
 * The event id of `seq` ties the snapshot to its log: a log wiped and written again
 * reaches the same seq with other events, and a snapshot of the old one must not load.
 */

/**
 * The shape of the documents and what evolve makes of the events. Bump it whenever a
 * projection's documents or evolve change (test/unit/projection-snapshot.unit.test.ts
 * fails until then): a snapshot of another schema is skipped and the log replayed.
 */
export const SNAPSHOT_SCHEMA_VERSION = 1;
export const SNAPSHOT_FORMAT = 'cri-ledger-projections';
/** Documents encoded per chunk: the writer yields to the event loop between chunks. */
export const DEFAULT_SNAPSHOT_CHUNK_DOCUMENTS = 64;

export interface SnapshotHeader {
  format: typeof SNAPSHOT_FORMAT;
  schema: number;
  /** The snapshot holds the projections after this event, and only its effects and those before it. */
  seq: number;
  eventId: string;
  at: string;
  /** Documents per read model: a second check, after the checksum, that nothing is missing. */
  counts: Record<ModelName, number>;
}

/** Projections frozen at one position: captured in one synchronous step, encoded later a chunk at a time. */
export interface CapturedProjections {
  header: SnapshotHeader;
  models: ReadonlyArray<readonly [ModelName, ReadonlyArray<readonly [string, unknown]>]>;
}

/** A snapshot that cannot be loaded: the caller skips it and uses an older one or the log. */
export class SnapshotFormatError extends CriLedgerError {}

/**
 * Captures the projections as they stand. Synchronous and O(documents): the maps are
 * copied, the documents shared (they are immutable), so what the events after this
 * point do is not in the capture. Undefined before the first event (nothing to save).
 */
export function captureProjections(projections: Projections): CapturedProjections | undefined {
  const last = projections.lastApplied();
  if (last === undefined) return undefined;
  const models = projections.models().map(([name, model]) => [name, model.entries()] as const);
  const counts = Object.fromEntries(models.map(([name, docs]) => [name, docs.length])) as Record<ModelName, number>;
  return {
    header: {
      format: SNAPSHOT_FORMAT,
      schema: SNAPSHOT_SCHEMA_VERSION,
      seq: last.seq,
      eventId: last.id,
      at: last.at,
      counts,
    },
    models,
  };
}

/** The snapshot's text, a chunk of lines at a time (each chunk ends with a newline). */
export function* encodeSnapshot(
  captured: CapturedProjections,
  documentsPerChunk = DEFAULT_SNAPSHOT_CHUNK_DOCUMENTS,
): Generator<string> {
  yield `${JSON.stringify(captured.header)}\n`;
  let lines: string[] = [];
  for (const [name, docs] of captured.models) {
    for (const [key, doc] of docs) {
      lines.push(JSON.stringify([name, key, doc]));
      if (lines.length >= documentsPerChunk) {
        yield `${lines.join('\n')}\n`;
        lines = [];
      }
    }
  }
  if (lines.length > 0) yield `${lines.join('\n')}\n`;
}

/** Reads the first line: what a snapshot claims to be, before its body is parsed. */
export function decodeSnapshotHeader(firstLine: string): SnapshotHeader {
  let header: unknown;
  try {
    header = JSON.parse(firstLine);
  } catch {
    throw new SnapshotFormatError('the header is not JSON');
  }
  const h = header as Partial<SnapshotHeader> | null;
  if (typeof h !== 'object' || h === null || h.format !== SNAPSHOT_FORMAT)
    throw new SnapshotFormatError(`not a ${SNAPSHOT_FORMAT} snapshot`);
  if (typeof h.schema !== 'number') throw new SnapshotFormatError('the header has no schema version');
  if (!Number.isSafeInteger(h.seq) || (h.seq as number) < 1) throw new SnapshotFormatError('the header has no seq');
  if (typeof h.eventId !== 'string' || typeof h.at !== 'string')
    throw new SnapshotFormatError('the header has no event id or time');
  if (typeof h.counts !== 'object' || h.counts === null) throw new SnapshotFormatError('the header has no counts');
  return h as SnapshotHeader;
}

/**
 * The projections a snapshot holds, positioned at its seq. Throws SnapshotFormatError
 * for another schema version, a line that does not parse, an unknown read model, or
 * counts that do not match the header. The body's bytes are checked by the store first.
 */
export function decodeSnapshot(text: string): { header: SnapshotHeader; projections: Projections } {
  const firstEnd = text.indexOf('\n');
  if (firstEnd < 0) throw new SnapshotFormatError('no header line');
  const header = decodeSnapshotHeader(text.slice(0, firstEnd));
  if (header.schema !== SNAPSHOT_SCHEMA_VERSION)
    throw new SnapshotFormatError(`schema ${header.schema}; this build reads schema ${SNAPSHOT_SCHEMA_VERSION}`);
  const projections = new Projections();
  const byName = new Map<string, Array<[string, unknown]>>(projections.models().map(([name]) => [name, []]));
  let start = firstEnd + 1;
  let line = 1;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    let entry: unknown;
    try {
      entry = JSON.parse(text.slice(start, end));
    } catch {
      throw new SnapshotFormatError(`line ${line} is not JSON`);
    }
    if (
      !Array.isArray(entry) ||
      entry.length !== 3 ||
      typeof entry[1] !== 'string' ||
      typeof entry[2] !== 'object' ||
      entry[2] === null
    )
      throw new SnapshotFormatError(`line ${line} is not a [model, key, document] entry`);
    const docs = byName.get(entry[0] as string);
    if (!docs) throw new SnapshotFormatError(`line ${line} names an unknown read model ${String(entry[0])}`);
    docs.push([entry[1], entry[2]]);
    start = end + 1;
  }
  const last: AppliedEvent = { seq: header.seq, id: header.eventId, at: header.at };
  for (const [name, model] of projections.models()) {
    const docs = byName.get(name)!;
    if (header.counts[name] !== docs.length)
      throw new SnapshotFormatError(`${name}: ${docs.length} documents, the header says ${header.counts[name]}`);
    model.restore(docs, header.seq);
  }
  projections.restoredAt(last);
  return { header, projections };
}

/** One document that differs between two projections. */
export interface ProjectionDifference {
  model: ModelName | 'position';
  key: string;
  /** Where the document is, or that it is in both with other contents. */
  kind: 'only-left' | 'only-right' | 'differs';
}

/**
 * The documents two projections disagree on, compared by value (keys in any order; a
 * property set to undefined is the same as an absent one, as in JSON). At most `limit`.
 */
export function diffProjections(left: Projections, right: Projections, limit = 100): ProjectionDifference[] {
  const out: ProjectionDifference[] = [];
  if (left.position() !== right.position())
    out.push({ model: 'position', key: `${left.position()} vs ${right.position()}`, kind: 'differs' });
  const rightModels = new Map(right.models());
  for (const [name, model] of left.models()) {
    const other = rightModels.get(name)!;
    for (const key of model.keys()) {
      if (out.length >= limit) return out;
      const theirs = other.get(key);
      if (theirs === undefined) out.push({ model: name, key, kind: 'only-left' });
      else if (canonicalJson(model.get(key)) !== canonicalJson(theirs)) out.push({ model: name, key, kind: 'differs' });
    }
    for (const key of other.keys()) {
      if (out.length >= limit) return out;
      if (model.get(key) === undefined) out.push({ model: name, key, kind: 'only-right' });
    }
  }
  return out;
}

/** JSON with object keys sorted at every level: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
