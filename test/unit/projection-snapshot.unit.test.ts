import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import type { SnapshotStore, StoredSnapshot } from '../../src/commands/ports.js';
import { SnapshotCorruptError } from '../../src/domain/errors.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { imageStream, nodeStream } from '../../src/domain/ids.js';
import {
  captureProjections,
  diffProjections,
  decodeSnapshot,
  encodeSnapshot,
  SNAPSHOT_SCHEMA_VERSION,
  SnapshotFormatError,
} from '../../src/projections/projection-snapshot.js';
import { Projections } from '../../src/projections/projections.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';
import { generateScenario } from '../support/scenario.js';

/** A node's history with something in every read model: the scenario, plus images, stalls, undelivered results and a reconciliation. */
async function nodeHistory(seed: number, pods = 60): Promise<{ log: MemoryEventLog; events: LedgerEvent[] }> {
  const log = new MemoryEventLog();
  for (const a of generateScenario({ pods, seed, sessions: true, openSessions: true }))
    await log.append(a.stream, a.expected, a.events);
  const stuck = container(`stuck-${seed}`, 'pod0', `stuck_pod0_ns_uid-0_${seed}`);
  await log.append(streams.container(stuck), 0, [ev.nameReserved(stuck, 'req-stuck'), ev.specGenerated('req-stuck')]);
  await log.append(streams.container(stuck), 2, [stalled]);
  const lost = container(`lost-${seed}`, 'pod0', `lost_pod0_ns_uid-0_${seed}`);
  await log.append(streams.container(lost), 0, [
    ev.nameReserved(lost, 'req-lost'),
    ev.specGenerated('req-lost'),
    ev.snapshotPrepared(lost, 'req-lost'),
    ev.containerCreated(1, 'req-lost'),
  ]);
  await log.append(streams.container(lost), 4, [undelivered(lost.name)]);
  await log.append(imageStream('docker.io/library/busybox:1.36'), 0, [
    pullStarted('docker.io/library/busybox:1.36'),
    pulled('docker.io/library/busybox:1.36'),
  ]);
  await log.append(imageStream('docker.io/library/nginx:1'), 0, [pullStarted('docker.io/library/nginx:1')]);
  await log.append(nodeStream('test-node'), 0, [
    {
      type: 'RuntimeReconciled',
      correlationId: 'reconcile',
      data: { orphansRemoved: [], missing: [{ kind: 'container', id: lost.id, state: 'CREATED' }] },
    },
  ]);
  const events: LedgerEvent[] = [];
  for await (const e of log.readAll()) events.push(e);
  return { log, events };
}

const stalled: NewEvent<'OperationStalled'> = {
  type: 'OperationStalled',
  correlationId: 'req-stuck',
  data: {
    operation: 'CreateContainer',
    step: 'SnapshotPrepared',
    elapsedMs: 1500,
    deadline: '2026-11-28T10:02:00.000Z',
  },
};
const undelivered = (name: string): NewEvent<'ResultUndelivered'> => ({
  type: 'ResultUndelivered',
  correlationId: 'req-lost',
  data: {
    name,
    requestDigest: `sha256:${'a'.repeat(64)}`,
    reason: 'deadline',
    gaveUpAt: '2026-11-28T10:02:00.000Z',
    callerDeadline: '2026-11-28T10:02:00.000Z',
  },
});
const pullStarted = (reference: string): NewEvent<'ImagePullStarted'> => ({
  type: 'ImagePullStarted',
  correlationId: `req-pull-${reference}`,
  data: { reference, origin: 'registry' },
});
const pulled = (reference: string): NewEvent<'ImagePulled'> => ({
  type: 'ImagePulled',
  correlationId: `req-pull-${reference}`,
  data: {
    reference,
    origin: 'registry',
    imageId: 'sha256:1111',
    targetDigest: 'sha256:2222',
    size: 4_400_000,
    durationMs: 812,
    layers: [],
  },
});

function replay(events: readonly LedgerEvent[]): Projections {
  const p = new Projections();
  p.applyAll(events);
  return p;
}

/** Encodes and decodes the projections as they stand: what a start would load. */
function roundTrip(p: Projections, documentsPerChunk?: number): Projections {
  return decodeSnapshot([...encodeSnapshot(captureProjections(p)!, documentsPerChunk)].join('')).projections;
}

/** A store of snapshots held in memory, each readable or failing as the test says. */
class MemorySnapshotStore implements SnapshotStore {
  readonly texts = new Map<number, string | Error>();
  async list(): Promise<StoredSnapshot[]> {
    return [...this.texts.keys()].sort((a, b) => b - a).map((seq) => ({ seq, location: `mem:${seq}` }));
  }
  async read(s: StoredSnapshot): Promise<string> {
    const text = this.texts.get(s.seq)!;
    if (text instanceof Error) throw text;
    return text;
  }
  put(p: Projections): number {
    const captured = captureProjections(p)!;
    this.texts.set(captured.header.seq, [...encodeSnapshot(captured)].join(''));
    return captured.header.seq;
  }
}

describe('snapshots of the projections', () => {
  it('round-trips every read model to the state a full replay gives', async () => {
    for (const seed of [1, 2, 3]) {
      const { events } = await nodeHistory(seed);
      const full = replay(events);
      for (const [name, model] of full.models()) assert.ok(model.size > 0, `seed ${seed}: ${name} holds no document`);
      for (const chunk of [1, 7, 256]) {
        const loaded = roundTrip(full, chunk);
        assert.deepEqual(diffProjections(loaded, full), [], `seed ${seed}, ${chunk} documents per chunk`);
        assert.equal(loaded.position(), full.position());
        assert.deepEqual(loaded.lastApplied(), full.lastApplied());
        assert.deepEqual(JSON.parse(JSON.stringify(loaded.snapshot())), JSON.parse(JSON.stringify(full.snapshot())));
      }
    }
  });

  it('gives the full replay when a snapshot taken anywhere in the log is loaded and the rest replayed', async () => {
    const { events } = await nodeHistory(4, 40);
    const full = replay(events);
    const step = Math.max(1, Math.floor(events.length / 23));
    for (let cut = 1; cut < events.length; cut += step) {
      const loaded = roundTrip(replay(events.slice(0, cut)));
      loaded.applyAll(events.slice(cut));
      assert.deepEqual(diffProjections(loaded, full), [], `snapshot at seq ${cut}`);
    }
  });

  it('captures the projections as they stood: events applied after the capture are not in it', async () => {
    const { events } = await nodeHistory(5, 20);
    const half = Math.floor(events.length / 2);
    const p = replay(events.slice(0, half));
    const captured = captureProjections(p)!;
    p.applyAll(events.slice(half));
    const loaded = decodeSnapshot([...encodeSnapshot(captured)].join('')).projections;
    assert.equal(loaded.position(), half);
    assert.deepEqual(diffProjections(loaded, replay(events.slice(0, half))), []);
    assert.ok(diffProjections(loaded, p).length > 0, 'the later events must have changed something');
  });

  it('has nothing to capture before the first event', () => {
    assert.equal(captureProjections(new Projections()), undefined);
  });

  it('refuses another schema version, a document the header does not count, an unknown model and a bad line', async () => {
    const { events } = await nodeHistory(6, 5);
    const text = [...encodeSnapshot(captureProjections(replay(events))!)].join('');
    const [header, ...lines] = text.trimEnd().split('\n');
    const h = JSON.parse(header!) as Record<string, unknown>;
    const withHeader = (patch: Record<string, unknown>, body = lines): string =>
      `${JSON.stringify({ ...h, ...patch })}\n${body.join('\n')}\n`;
    assert.throws(() => decodeSnapshot(withHeader({ schema: SNAPSHOT_SCHEMA_VERSION + 1 })), /schema/);
    assert.throws(() => decodeSnapshot(withHeader({}, lines.slice(1))), SnapshotFormatError);
    assert.throws(() => decodeSnapshot(withHeader({}, [...lines, '["ghosts","k",{}]'])), /unknown read model/);
    assert.throws(() => decodeSnapshot(withHeader({}, [...lines, '["containers",'])), /not JSON/);
    assert.throws(() => decodeSnapshot('{"format":"something else"}\n'), /not a cri-ledger-projections/);
    assert.doesNotThrow(() => decodeSnapshot(withHeader({})));
  });
});

describe('Ledger.load from a snapshot', () => {
  it('loads the newest snapshot and replays only the events after it', async () => {
    const { log, events } = await nodeHistory(7, 30);
    const store = new MemorySnapshotStore();
    store.put(replay(events.slice(0, 100)));
    const seq = store.put(replay(events.slice(0, events.length - 50)));
    const ledger = await Ledger.load(log, undefined, { snapshots: store });
    assert.equal(ledger.loadedFrom.snapshot?.seq, seq);
    assert.equal(ledger.loadedFrom.replayed, 50);
    assert.deepEqual(diffProjections(ledger.projections, replay(events)), []);
  });

  it('skips a corrupt, an old-schema, a foreign and a future snapshot, each with its reason, for an older good one', async () => {
    const { log, events } = await nodeHistory(8, 30);
    const store = new MemorySnapshotStore();
    const good = store.put(replay(events.slice(0, 200)));
    const oldSchema = store.put(replay(events.slice(0, 300)));
    store.texts.set(
      oldSchema,
      (store.texts.get(oldSchema) as string).replace(`"schema":${SNAPSHOT_SCHEMA_VERSION}`, '"schema":0'),
    );
    const foreign = store.put(replay(events.slice(0, 400)));
    store.texts.set(
      foreign,
      (store.texts.get(foreign) as string).replace(events[399]!.id, '01JTFOREIGNFOREIGNFOREIGN0'),
    );
    const corrupt = store.put(replay(events.slice(0, 500)));
    store.texts.set(corrupt, new SnapshotCorruptError(`mem:${corrupt}`, 'checksum mismatch'));
    const future = events.length + 10;
    store.texts.set(future, store.texts.get(good)!);
    const skipped: string[] = [];
    const ledger = await Ledger.load(log, undefined, {
      snapshots: store,
      onSnapshotSkipped: (s, reason) => skipped.push(`${s.seq}: ${reason}`),
    });
    assert.equal(ledger.loadedFrom.snapshot?.seq, good);
    assert.equal(skipped.length, 4);
    assert.match(skipped[0]!, /past the log's head/);
    assert.match(skipped[1]!, /checksum mismatch/);
    assert.match(skipped[2]!, /another log/);
    assert.match(skipped[3]!, /schema 0/);
    assert.deepEqual(diffProjections(ledger.projections, replay(events)), []);
  });

  it('replays the whole log when no snapshot is usable, and never fails for one', async () => {
    const { log, events } = await nodeHistory(9, 10);
    const store = new MemorySnapshotStore();
    store.texts.set(50, 'garbage');
    const ledger = await Ledger.load(log, undefined, { snapshots: store });
    assert.equal(ledger.loadedFrom.snapshot, undefined);
    assert.equal(ledger.loadedFrom.replayed, events.length);
    assert.deepEqual(diffProjections(ledger.projections, replay(events)), []);
  });

  it('keeps events appended during the load and after it', async () => {
    const { log, events } = await nodeHistory(10, 10);
    const store = new MemorySnapshotStore();
    store.put(replay(events.slice(0, events.length - 5)));
    const loading = Ledger.load(log, undefined, { snapshots: store });
    const late = container('late', 'pod0', 'late_pod0_ns_uid-0_0');
    await log.append(streams.container(late), 0, [ev.nameReserved(late, 'req-late')]);
    const ledger = await loading;
    assert.equal(ledger.projections.containers.get(late.id)?.state, 'CREATING');
    const all: LedgerEvent[] = [];
    for await (const e of log.readAll()) all.push(e);
    assert.deepEqual(diffProjections(ledger.projections, replay(all)), []);
  });
});

// Compiled to dist/test/unit; the sources are three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** What the documents in a snapshot depend on: the projections and the events they fold. */
const SCHEMA_SOURCES = [
  'src/domain/events.ts',
  'src/domain/ids.ts',
  'src/projections/container-store.ts',
  'src/projections/image-store.ts',
  'src/projections/name-index.ts',
  'src/projections/open-sessions.ts',
  'src/projections/operations.ts',
  'src/projections/projection-snapshot.ts',
  'src/projections/projections.ts',
  'src/projections/read-model.ts',
  'src/projections/sandbox-name-index.ts',
  'src/projections/sandbox-store.ts',
  'src/projections/undelivered-results.ts',
];
/**
 * The fingerprint of SCHEMA_SOURCES that SNAPSHOT_SCHEMA_VERSION was set for. Still schema 1
 * after the stores took repeated strings from a shared pool: the documents are equal, byte for byte.
 */
const SCHEMA_FINGERPRINT = { version: 1, sha256: '97c8396501694663' };

it('asks for a new snapshot schema version when the projections or the events change', () => {
  const code = SCHEMA_SOURCES.map((file) =>
    readFileSync(join(ROOT, file), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '')
      .replace(/\s+/g, ''),
  ).join('\n');
  const sha256 = createHash('sha256').update(code).digest('hex').slice(0, 16);
  assert.deepEqual(
    { version: SNAPSHOT_SCHEMA_VERSION, sha256 },
    SCHEMA_FINGERPRINT,
    'the code that shapes snapshot documents changed: if a document or an evolve changed, bump ' +
      'SNAPSHOT_SCHEMA_VERSION (src/projections/projection-snapshot.ts) so old snapshots are skipped; ' +
      'then set SCHEMA_FINGERPRINT here to the version and sha256 this test computed',
  );
});
