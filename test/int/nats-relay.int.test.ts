import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { after, afterEach, before, it } from 'node:test';
import {
  connect,
  nanos,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
} from 'nats';
import { pino } from 'pino';
import { NatsRelay, type NatsRelayOptions } from '../../src/adapters/bus/nats-relay.js';
import { DEFAULT_DUPLICATE_WINDOW_MS, StreamConfigMismatchError } from '../../src/adapters/bus/nats-stream-config.js';
import { subjectFor } from '../../src/adapters/bus/nats-subject.js';
import { OutboxCursor } from '../../src/adapters/bus/outbox-cursor.js';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import type { EventLog, RawRecord } from '../../src/commands/ports.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';
import { startNatsProxy } from '../support/nats-proxy.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

let server: NatsServer;
const cleanups: Array<() => Promise<unknown>> = [];

before(async () => {
  server = await startNatsServer();
});

// Relays and logs end with their test, so a later test's server restart cannot touch them.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

after(async () => {
  await server?.stop();
});

/**
 * Runs `body` on a fresh connection: a request sent while a long-lived connection is
 * still reconnecting after a server restart is lost and only times out.
 */
async function withJsm<T>(body: (jsm: JetStreamManager) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: server.url });
  try {
    return await body(await nc.jetstreamManager());
  } finally {
    await nc.close();
  }
}

/** A LevelDB log in a temp dir, closed and removed after the test. */
async function levelLog(node = 'test-node'): Promise<{ log: LevelDbEventLog; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-relay-'));
  const log = await LevelDbEventLog.open({ dir, node });
  cleanups.push(async () => {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { log, dir };
}

async function startRelay(
  log: EventLog,
  o: Partial<NatsRelayOptions> & { node: string; stream: string },
): Promise<NatsRelay> {
  const relay = await NatsRelay.start({
    log,
    servers: server.url,
    replicas: 1,
    duplicateWindowMs: DEFAULT_DUPLICATE_WINDOW_MS,
    maxAgeMs: 0,
    logger: pino({ level: 'silent' }),
    reconnectWaitMs: 50,
    publishTimeoutMs: 1_000,
    ...o,
  });
  cleanups.push(() => relay.stop());
  return relay;
}

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Appends `n` container events, each container its own stream; returns them. */
async function appendContainers(log: EventLog, prefix: string, n: number): Promise<LedgerEvent[]> {
  const out: LedgerEvent[] = [];
  for (let i = 0; i < n; i++) {
    const c = container(`${prefix}-${i}`);
    out.push(...(await log.append(streams.container(c), 0, [ev.nameReserved(c)])));
  }
  return out;
}

/** Every message of the stream, in stream order. */
async function streamMessages(stream: string): Promise<StoredMsg[]> {
  return withJsm(async (jsm) => {
    const info = await jsm.streams.info(stream);
    const out: StoredMsg[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      // A deleted message leaves a hole in the stream's sequence.
      const message = await jsm.streams.getMessage(stream, { seq }).catch((error: Error) => {
        if (error.message === 'no message found') return undefined;
        throw error;
      });
      if (message) out.push(message);
    }
    return out;
  });
}

const streamConfig = (stream: string): Promise<StreamConfig> =>
  withJsm(async (jsm) => (await jsm.streams.info(stream)).config);

const seqOf = (m: StoredMsg): number => (m.json() as { seq: number }).seq;

it('publishes every event in seq order, on its subject, with its id and the stored bytes', async () => {
  const { log } = await levelLog('node-1.example');
  const c = container('ordered');
  await log.append(streams.container(c), 0, [
    ev.nameReserved(c),
    ev.specGenerated(),
    ev.snapshotPrepared(c),
    ev.containerCreated(),
  ]);
  // An image stream: its name is full of dots, which must not split the subject.
  await log.append('image-docker.io/library/busybox:latest', 0, [ev.nameReserved(container('img'))]);
  await appendContainers(log, 'bulk', 40);
  // A window far below the backlog makes acks overlap and exercises the contiguous cursor.
  const relay = await startRelay(log, { node: 'node-1.example', stream: 'ORDER', window: 4 });
  await waitFor('the relay to catch up', () => relay.status().cursor === log.head());

  const records: RawRecord[] = [];
  for await (const r of log.readRecords()) records.push(r);
  const events: LedgerEvent[] = [];
  for await (const e of log.readAll()) events.push(e);
  const messages = await streamMessages('ORDER');
  assert.equal(messages.length, 45);
  messages.forEach((m, i) => {
    assert.equal(m.subject, subjectFor(events[i]!, 'node-1.example'));
    assert.equal(m.header.get('Nats-Msg-Id'), events[i]!.id);
    assert.equal(m.string(), records[i]!.json, `body of seq ${i + 1}`);
  });
  assert.equal(
    messages[4]!.subject,
    'cri-ledger.node-1%2Eexample.image.docker%2Eio/library/busybox:latest.NameReserved',
  );
  const status = relay.status();
  assert.deepEqual(
    { connected: status.connected, cursor: status.cursor, head: status.head, lag: status.lag },
    { connected: true, cursor: 45, head: 45, lag: 0 },
  );
  assert.ok(status.lastPublishAt);
  await relay.stop();
  assert.equal(await log.readCursor('relay'), 45);
});

it('keeps appending while the server is down and drains the backlog in order once it is back', async () => {
  const { log } = await levelLog('down-up');
  const relay = await startRelay(log, { node: 'down-up', stream: 'DOWNUP' });
  await appendContainers(log, 'before', 3);
  await waitFor('the first events', () => relay.status().cursor === 3);

  await server.down();
  await waitFor('the relay to see the disconnect', () => !relay.status().connected);
  const during = await appendContainers(log, 'during', 5);
  assert.equal(during.at(-1)!.seq, 8);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual({ cursor: relay.status().cursor, lag: relay.status().lag }, { cursor: 3, lag: 5 });

  await server.restart();
  await waitFor('the backlog to drain', () => relay.status().cursor === 8);
  const messages = await streamMessages('DOWNUP');
  assert.deepEqual(messages.map(seqOf), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(relay.status().connected, true);
  assert.equal(relay.status().lag, 0);
});

it('resumes from a cursor that lags behind what was published, and the dedupe window drops the re-sent events', async () => {
  const { log, dir } = await levelLog('crash');
  const first = await startRelay(log, { node: 'crash', stream: 'CRASH' });
  await appendContainers(log, 'a', 5);
  await waitFor('five acks', () => first.status().cursor === 5);
  await first.stop();
  // A crash between the acks and the cursor write: the stored cursor says only 2 arrived.
  await log.writeCursor('relay', 2);
  await log.close();
  const reopened = await LevelDbEventLog.open({ dir, node: 'crash' });
  cleanups.push(() => reopened.close());
  await appendContainers(reopened, 'b', 3);

  const second = await startRelay(reopened, { node: 'crash', stream: 'CRASH' });
  await waitFor('the second relay to catch up', () => second.status().cursor === 8);
  const messages = await streamMessages('CRASH');
  const ids = messages.map((m) => m.header.get('Nats-Msg-Id'));
  assert.equal(messages.length, 8, 'seqs 3..5 were re-sent and must have been dropped as duplicates');
  assert.equal(new Set(ids).size, 8);
  assert.deepEqual(messages.map(seqOf), [1, 2, 3, 4, 5, 6, 7, 8]);
});

it('loses nothing and duplicates nothing when the server is killed mid-drain', async () => {
  const total = 500;
  const log = new MemoryEventLog({ node: 'killed' });
  const c = container('k');
  await log.append(
    streams.container(c),
    0,
    Array.from({ length: total }, (_, i) => ev.containerStarted(i)),
  );
  // A small window keeps the drain going long enough to kill the server in the middle.
  const relay = await startRelay(log, { node: 'killed', stream: 'KILLED', window: 8, publishTimeoutMs: 300 });
  await waitFor('the drain to be under way', () => relay.status().cursor >= 50);
  const atKill = relay.status().cursor;
  await server.kill();
  await server.restart();
  await waitFor('the drain to finish', () => relay.status().cursor === total);
  assert.ok(atKill < total, `the kill came after the drain (cursor ${atKill})`);
  const messages = await streamMessages('KILLED');
  // Order may differ after a lost connection (the documented caveat); the set may not.
  assert.equal(messages.length, total);
  assert.deepEqual(
    messages.map(seqOf).sort((a, b) => a - b),
    Array.from({ length: total }, (_, i) => i + 1),
  );
});

it('sends nothing past cursor + window while a lost publish waits for its timeout, so its re-send is less than a window late', async () => {
  const total = 120;
  const window = 8;
  const log = new MemoryEventLog({ node: 'lost-one' });
  const c = container('l');
  const events = await log.append(
    streams.container(c),
    0,
    Array.from({ length: total }, (_, i) => ev.containerStarted(i)),
  );
  const seqById = new Map(events.map((e) => [e.id, e.seq]));
  const lost = events[19]!; // seq 20
  // The proxy drops seq 20's first publish, as a leader dying with it in flight does; the
  // publishes after it reach the server and are acked.
  let dropped = false;
  const proxy = await startNatsProxy(server.port, (id) => {
    if (dropped || id !== lost.id) return false;
    dropped = true;
    return true;
  });
  cleanups.push(() => proxy.stop());
  const relay = await startRelay(log, {
    servers: proxy.url,
    node: 'lost-one',
    stream: 'LOSTONE',
    window,
    publishTimeoutMs: 1_500,
  });
  await waitFor('the drain to finish', () => relay.status().cursor === total, 20_000);

  assert.ok(dropped, 'the proxy dropped the first publish of seq 20');
  const resent = proxy.forwarded.indexOf(lost.id);
  assert.ok(resent > 0, 'seq 20 was re-sent after its timeout');
  const sentBefore = proxy.forwarded.slice(0, resent).map((id) => seqById.get(id)!);
  const furthest = Math.max(...sentBefore);
  // How far it got depends on when the window last half drained; past cursor + window it may not go.
  assert.ok(furthest > lost.seq, `the relay went on publishing past the lost one (to ${furthest})`);
  assert.ok(
    furthest <= lost.seq - 1 + window,
    `nothing past the cursor (19) + ${window} before the re-send (${furthest})`,
  );
  const order = (await streamMessages('LOSTONE')).map(seqOf);
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    Array.from({ length: total }, (_, i) => i + 1),
    'every event stored once',
  );
  const lateBy = order.slice(0, order.indexOf(lost.seq)).filter((seq) => seq > lost.seq).length;
  assert.equal(lateBy, furthest - lost.seq, 'the re-sent event landed right after what was sent before it');
  assert.ok(lateBy < window, `less than one window late (${lateBy})`);
});

it('re-sends its recent acks after the server went away: an event acked and then lost is stored again, nothing twice', async () => {
  const log = new MemoryEventLog({ node: 'acked-lost' });
  const relay = await startRelay(log, { node: 'acked-lost', stream: 'ACKEDLOST' });
  await appendContainers(log, 'a', 20);
  await waitFor('twenty acks', () => relay.status().cursor === 20);
  // What a crash of every replica does to an event acked a moment before it was on disk
  // (nats-server#7564): the stream no longer has it. A server restart also rebuilds the
  // dedupe window from what is stored, so the id of the lost event is forgotten too.
  await withJsm((jsm) => jsm.streams.deleteMessage('ACKEDLOST', 18, false));
  // Shut down, not killed: a SIGKILL could lose the deletion the same way.
  await server.down();
  await server.restart();
  await appendContainers(log, 'b', 2);
  await waitFor('the two after the restart', () => relay.status().cursor === 22, 20_000);
  const seqs = (await streamMessages('ACKEDLOST')).map(seqOf);
  assert.deepEqual(
    [...seqs].sort((a, b) => a - b),
    Array.from({ length: 22 }, (_, i) => i + 1),
    'seq 18 is back, and the re-sent ones were dropped as duplicates',
  );
  assert.ok(seqs.indexOf(18) < seqs.indexOf(21), 'the lost one was re-sent before the new ones');
});

it('does not re-send acks older than half the dedupe window: the server may have forgotten their ids', async () => {
  const log = new MemoryEventLog({ node: 'old-acks' });
  const relay = await startRelay(log, { node: 'old-acks', stream: 'OLDACKS', duplicateWindowMs: 2_000 });
  await appendContainers(log, 'a', 5);
  await waitFor('five acks', () => relay.status().cursor === 5);
  // Past the whole 2 s window: a re-send would be stored a second time.
  await new Promise((r) => setTimeout(r, 2_500));
  await server.kill();
  await server.restart();
  await appendContainers(log, 'b', 1);
  await waitFor('the one after the restart', () => relay.status().cursor === 6, 20_000);
  assert.deepEqual((await streamMessages('OLDACKS')).map(seqOf), [1, 2, 3, 4, 5, 6]);
});

it('creates the stream with file storage, limits retention and the configured windows', async () => {
  const relay = await startRelay(new MemoryEventLog({ node: 'cfg' }), {
    node: 'cfg',
    stream: 'CFG',
    duplicateWindowMs: 300_000,
    maxAgeMs: 3_600_000,
  });
  assert.ok(relay.status().connected);
  const config = await streamConfig('CFG');
  assert.deepEqual(
    {
      subjects: config.subjects,
      storage: config.storage,
      retention: config.retention,
      replicas: config.num_replicas,
      dup: config.duplicate_window,
      age: config.max_age,
    },
    {
      subjects: ['cri-ledger.cfg.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      replicas: 1,
      dup: nanos(300_000),
      age: nanos(3_600_000),
    },
  );
});

it('refuses an existing stream whose settings differ, naming the key, and leaves it alone', async () => {
  await withJsm((jsm) =>
    jsm.streams.add({
      name: 'MISMATCH',
      subjects: ['cri-ledger.mm.>'],
      storage: StorageType.File,
      duplicate_window: nanos(120_000),
    }),
  );
  await assert.rejects(
    startRelay(new MemoryEventLog({ node: 'mm' }), { node: 'mm', stream: 'MISMATCH' }),
    (error: unknown) => {
      assert.ok(error instanceof StreamConfigMismatchError);
      assert.equal(error.message, 'stream MISMATCH: duplicate_window is 2m, config wants 10m');
      return true;
    },
  );
  assert.equal((await streamConfig('MISMATCH')).duplicate_window, nanos(120_000));
});

it("adds a second node's subjects to the shared stream, and both nodes' events land in it", async () => {
  const a = new MemoryEventLog({ node: 'agg-a' });
  const b = new MemoryEventLog({ node: 'agg-b.example' });
  await appendContainers(a, 'a', 1);
  await appendContainers(b, 'b', 1);
  const ra = await startRelay(a, { node: 'agg-a', stream: 'AGG' });
  const rb = await startRelay(b, { node: 'agg-b.example', stream: 'AGG' });
  await startRelay(a, { node: 'agg-a', stream: 'AGG' }).then((again) => again.stop());
  assert.deepEqual((await streamConfig('AGG')).subjects, ['cri-ledger.agg-a.>', 'cri-ledger.agg-b%2Eexample.>']);
  await waitFor('both relays', () => ra.status().cursor === 1 && rb.status().cursor === 1);
  const subjects = (await streamMessages('AGG')).map((m) => m.subject.split('.')[1] ?? '').sort();
  assert.deepEqual(subjects, ['agg-a', 'agg-b%2Eexample']);
});

it('starts while NATS is unreachable, reports and logs the lag, and catches up once NATS is there', async () => {
  const log = new MemoryEventLog({ node: 'late' });
  await appendContainers(log, 'late', 3);
  const lines: Array<{ msg: string; lag?: number; component?: string }> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString())), done()) }),
  );
  await server.down();
  const relay = await startRelay(log, { node: 'late', stream: 'LATE', logger, lagLogIntervalMs: 20 });
  const down = relay.status();
  assert.deepEqual(
    { enabled: down.enabled, connected: down.connected, cursor: down.cursor, head: down.head, lag: down.lag },
    { enabled: true, connected: false, cursor: 0, head: 3, lag: 3 },
  );
  assert.match(down.lastError ?? '', /.+/);
  await waitFor('a lag log line', () =>
    lines.some((l) => l.msg === 'relay lagging' && l.lag === 3 && l.component === 'nats-relay'),
  );
  await server.restart();
  await waitFor('the late relay to catch up', () => relay.status().cursor === 3);
  assert.equal(relay.status().connected, true);
  assert.equal(relay.status().lag, 0);
  assert.ok(lines.some((l) => l.msg === 'NATS connected'));
});

it('halts and calls onFatal when a mismatched stream is found after starting without NATS', async () => {
  await withJsm((jsm) =>
    jsm.streams.add({
      name: 'LATE_MISMATCH',
      subjects: ['cri-ledger.late-mm.>'],
      storage: StorageType.File,
      num_replicas: 1,
      duplicate_window: nanos(120_000),
    }),
  );
  await server.down();
  let fatal: Error | undefined;
  const relay = await startRelay(new MemoryEventLog({ node: 'late-mm' }), {
    node: 'late-mm',
    stream: 'LATE_MISMATCH',
    onFatal: (e) => (fatal = e),
  });
  await server.restart();
  await waitFor('onFatal', () => fatal !== undefined);
  assert.ok(fatal instanceof StreamConfigMismatchError);
  assert.match(relay.status().lastError ?? '', /duplicate_window is 2m, config wants 10m/);
  assert.equal(relay.status().connected, false);
});

it('moves the cursor only over a contiguous prefix of acks, and persists it', async () => {
  const log = new MemoryEventLog({ node: 'cursor' });
  await log.writeCursor('relay', 10);
  const errors: unknown[] = [];
  const cursor = await OutboxCursor.load(log, (e) => errors.push(e));
  assert.equal(cursor.value, 10);
  assert.equal(cursor.ack(12), false, 'an ack above a gap does not move it');
  assert.equal(cursor.ack(13), false);
  assert.equal(cursor.ack(9), false, 'an ack below it changes nothing');
  assert.equal(cursor.value, 10);
  assert.equal(cursor.ack(11), true, 'filling the gap moves it over everything acked');
  assert.equal(cursor.value, 13);
  await cursor.flush();
  assert.equal(await log.readCursor('relay'), 13);
  assert.deepEqual(errors, []);
});
