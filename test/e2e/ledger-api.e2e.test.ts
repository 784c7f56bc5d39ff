import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status as Status,
  type ServiceError,
} from '@grpc/grpc-js';
import { runtimeServiceV1, runtimeServiceV1alpha2 } from '../../src/adapters/cri/cri-definition.js';
import { pino } from 'pino';
import { startSocketServer, type SocketServer } from '../../src/adapters/grpc/socket-server.js';
import { grpcCodeFor, RemoteCallError } from '../../src/adapters/grpc/status.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { ledgerServiceClass } from '../../src/adapters/ledger-api/ledger-definition.js';
import { createLedgerService } from '../../src/adapters/ledger-api/ledger-service.js';
import type { EventRecord } from '../../src/adapters/ledger-api/wire.js';
import { Ledger } from '../../src/commands/ledger.js';
import {
  AmbiguousIdError,
  ConcurrencyError,
  InvalidArgumentError,
  LedgerClosedError,
  NotFoundError,
} from '../../src/domain/errors.js';
import { encodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { Projections } from '../../src/projections/projections.js';
import { runCli, startServe, tempRoot, writeScenarioLog, type ServeProcess } from '../support/cli.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

/** How a read ended: its records, or the error it failed with (settled at once, never unhandled). */
function outcome(records: AsyncIterable<EventRecord>): Promise<EventRecord[] | Error> {
  return collect(records).catch((error: Error) => error);
}

async function collect(records: AsyncIterable<EventRecord>): Promise<EventRecord[]> {
  const out: EventRecord[] = [];
  for await (const r of records) out.push(r);
  return out;
}

describe('cri-ledger serve: the Ledger API on its socket', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let events: LedgerEvent[];
  let serve: ServeProcess;
  let client: LedgerClient;
  let socket: string;

  before(async () => {
    root = await tempRoot('cri-ledger-e2e-');
    socket = join(root.dir, 'run', 's.sock');
    events = await writeScenarioLog(join(root.dir, 'ledger'), { pods: 10, seed: 6 });
    serve = await startServe({ root: root.dir, socket });
    client = LedgerClient.connect(socket);
  });

  after(async () => {
    client?.close();
    await serve?.stop('SIGKILL');
    await root?.cleanup();
  });

  it('streams every event as the exact stored JSON, in seq order', async () => {
    const records = await collect(client.readEvents());
    assert.deepEqual(
      records,
      events.map((e) => ({ seq: e.seq, json: encodeEvent(e) })),
    );
  });

  it('filters ReadEvents by type, stream, seq range and time on the server', async () => {
    const compensated = await collect(client.readEvents({ types: ['Compensated'] }));
    assert.deepEqual(
      compensated.map((r) => r.seq),
      events.filter((e) => e.type === 'Compensated').map((e) => e.seq),
    );
    assert.ok(compensated.length > 0);

    const stream = events[10]!.stream;
    const ofStream = await collect(client.readEvents({ streams: [stream], fromSeq: 5, toSeq: 150 }));
    assert.deepEqual(
      ofStream.map((r) => r.seq),
      events.filter((e) => e.stream === stream && e.seq >= 5 && e.seq <= 150).map((e) => e.seq),
    );

    const until = events[49]!.at;
    const early = await collect(client.readEvents({ until }));
    assert.equal(early.at(-1)!.seq, events.filter((e) => e.at <= until).at(-1)!.seq);
  });

  it('refuses an unknown event type with INVALID_ARGUMENT naming the field', async () => {
    await assert.rejects(collect(client.readEvents({ types: ['NameReservd'] })), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.equal(error.field, 'filter.types');
      assert.match(error.message, /unknown event type "NameReservd"/);
      return true;
    });
  });

  it('Follow catches up from a seq and stays open until the client cancels', async () => {
    const head = events.length;
    const stop = new AbortController();
    const seen: number[] = [];
    let ended = false;
    const reading = (async () => {
      for await (const r of client.follow({ fromSeq: head - 2 }, stop.signal)) seen.push(r.seq);
      ended = true;
    })();
    const deadline = Date.now() + 5_000;
    while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(seen, [head - 2, head - 1, head]);
    assert.equal(ended, false, 'a follow must not end at the head');
    stop.abort();
    await reading;
    assert.equal(ended, true);
  });

  it('Status reports the head, node, relay cursor and lag, counts and operations in flight', async () => {
    const expected = new Projections();
    expected.applyAll(events);
    const s = await client.status();
    assert.equal(s.node, 'test-node');
    assert.equal(s.head, events.length);
    assert.equal(s.headAt, events.at(-1)!.at);
    assert.deepEqual(
      { enabled: s.relay!.enabled, connected: s.relay!.connected, cursor: s.relay!.cursor, lag: s.relay!.lag },
      { enabled: false, connected: false, cursor: 0, lag: events.length },
    );
    assert.deepEqual(s.counts, {
      containers: expected.containers.size,
      sandboxes: expected.sandboxes.size,
      containerNames: expected.containerNames.size,
      sandboxNames: expected.sandboxNames.size,
      operationsInFlight: expected.operations.size,
      openSessions: expected.sessions.size,
    });
    assert.ok(expected.operations.size > 0, 'the scenario leaves sagas in flight');
    assert.deepEqual(s.operations.map((o) => o.stream).sort(), [...expected.operations.keys()].sort());
    for (const op of s.operations) assert.ok(op.ageMs > 0, `${op.stream} has an age`);
  });

  it('binds its socket readable and writable by the owner only', async () => {
    assert.equal((await stat(socket)).mode & 0o777, 0o600);
  });

  it('a second serve on the same root fails fast on the lock and leaves the first one socket alone', async () => {
    const second = await runCli(['serve', '--root', root.dir, '--socket', socket, '--log-level', 'warn'], {
      timeoutMs: 10_000,
    });
    assert.equal(second.code, 1);
    assert.match(second.stderr, /held by another cri-ledger process/);
    assert.equal(second.stderr.trim().split('\n').length, 1, 'one line, no stack');
    assert.ok((await stat(socket)).isSocket());
    assert.equal((await client.status()).head, events.length);
  });

  it('serves the CRI services beside the ledger: UNIMPLEMENTED names the RPC, v1alpha2 reaches the v1 handlers', async () => {
    const calls = [
      // Still unimplemented: the answer names the RPC.
      [
        runtimeServiceV1,
        'checkpointContainer',
        Status.UNIMPLEMENTED,
        /runtime\.v1\.RuntimeService\/CheckpointContainer is not implemented/,
      ],
      // Implemented for both versions: an unknown container is NOT_FOUND, not UNIMPLEMENTED.
      [runtimeServiceV1alpha2, 'attach', Status.NOT_FOUND, /container "x" not found/],
    ] as const;
    for (const [definition, method, code, details] of calls) {
      const Client = makeGenericClientConstructor(definition, 'RuntimeService');
      const cri = new Client(`unix://${socket}`, credentials.createInsecure());
      try {
        const error = await new Promise<ServiceError>((resolve, reject) =>
          (cri as unknown as Record<string, (r: object, cb: (e: ServiceError | null) => void) => void>)[method]!(
            { containerId: 'x', stdout: true },
            (e) => (e ? resolve(e) : reject(new Error(`${method} answered`))),
          ),
        );
        assert.equal(error.code, code, error.details);
        assert.match(error.details, details);
      } finally {
        cri.close();
      }
    }
  });

  it('refuses a bad config before it opens the log or binds the socket, naming the key and its source', async () => {
    const fresh = await tempRoot('cri-ledger-badconfig-');
    try {
      const badSocket = join(fresh.dir, 'run', 's.sock');
      const result = await runCli(['serve', '--root', fresh.dir, '--socket', badSocket], {
        timeoutMs: 10_000,
        env: { ...process.env, CRI_LEDGER_NATS_REPLICAS: '9' },
      });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /nats\.replicas: .*CRI_LEDGER_NATS_REPLICAS/);
      await assert.rejects(stat(badSocket), { code: 'ENOENT' });
      await assert.rejects(stat(join(fresh.dir, 'ledger')), { code: 'ENOENT' });
    } finally {
      await fresh.cleanup();
    }
  });

  it('exits 0 on SIGTERM, ending live follows with UNAVAILABLE and removing its socket', async () => {
    const stop = new AbortController();
    const following = outcome(client.follow({ fromSeq: events.length }, stop.signal));
    await new Promise((r) => setTimeout(r, 200));
    const exit = await serve.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    const ended = await following;
    assert.ok(ended instanceof RemoteCallError && ended.code === Status.UNAVAILABLE, inspect(ended));
    await assert.rejects(stat(socket), /ENOENT/);
  });
});

describe('Ledger API in process: live follow, logging, status codes', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let log: MemoryEventLog;
  let server: SocketServer;
  let client: LedgerClient;
  const lines: Array<Record<string, unknown>> = [];
  let socket: string;

  before(async () => {
    root = await tempRoot('cri-ledger-api-');
    socket = join(root.dir, 'api.sock');
    log = new MemoryEventLog();
    const ledger = await Ledger.load(log);
    const logger = pino(
      { level: 'debug' },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    server = await startSocketServer({
      socketPath: socket,
      services: [createLedgerService({ ledger, node: 'mem' })],
      logger,
    });
    client = LedgerClient.connect(socket);
  });

  after(async () => {
    client?.close();
    await server?.close(100);
    await root?.cleanup();
  });

  it('Follow delivers events appended while it runs, without gap or duplicate, as stored', async () => {
    const a = container('live-a');
    await log.append(streams.container(a), 0, [ev.nameReserved(a)]);
    const stop = new AbortController();
    const seen: EventRecord[] = [];
    const reading = (async () => {
      for await (const r of client.follow({ fromSeq: 1 }, stop.signal)) {
        seen.push(r);
        if (seen.length === 4) stop.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const live = await log.append(streams.container(a), 1, [ev.specGenerated(), ev.snapshotPrepared(a)]);
    await log.append(streams.container(a), 3, [ev.containerCreated()]);
    await reading;
    assert.deepEqual(
      seen.map((r) => r.seq),
      [1, 2, 3, 4],
    );
    const stored: string[] = [];
    for await (const r of log.readRecords()) stored.push(r.json);
    assert.deepEqual(
      seen.map((r) => r.json),
      stored,
    );
    assert.equal(seen[1]!.json, encodeEvent(live[0]!));
  });

  it('logs each RPC with its method, code, duration and the caller correlation id', async () => {
    const Ctor = ledgerServiceClass();
    const raw = new Ctor(`unix://${socket}`, credentials.createInsecure()) as unknown as {
      Status(req: object, md: Metadata, cb: (e: Error | null) => void): void;
      close(): void;
    };
    const md = new Metadata();
    md.set('x-correlation-id', 'corr-42');
    await new Promise<void>((resolve, reject) => raw.Status({}, md, (e) => (e ? reject(e) : resolve())));
    raw.close();
    const line = lines.find((l) => l.correlationId === 'corr-42');
    assert.ok(line, 'a log line carries the correlation id');
    assert.equal(line.rpc, '/cri_ledger.v1.Ledger/Status');
    assert.equal(line.code, 'OK');
    assert.equal(typeof line.durationMs, 'number');
  });

  it('maps domain errors to gRPC codes in one place', () => {
    assert.equal(grpcCodeFor(new InvalidArgumentError('f', 'bad')), Status.INVALID_ARGUMENT);
    assert.equal(grpcCodeFor(new AmbiguousIdError('ab', ['ab1', 'ab2'])), Status.INVALID_ARGUMENT);
    assert.equal(grpcCodeFor(new NotFoundError('container', 'x')), Status.NOT_FOUND);
    assert.equal(grpcCodeFor(new ConcurrencyError('s', 1, 2)), Status.ABORTED);
    assert.equal(grpcCodeFor(new LedgerClosedError()), Status.UNAVAILABLE);
    assert.equal(grpcCodeFor(new Error('boom')), Status.INTERNAL);
  });

  it('close() ends a live follow with UNAVAILABLE instead of waiting out the grace period', async () => {
    const following = outcome(client.follow({ fromSeq: log.head() + 1 }));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await server.close(10_000);
    assert.ok(Date.now() - started < 5_000, 'close did not wait for the follow to end by itself');
    const ended = await following;
    assert.ok(ended instanceof RemoteCallError && ended.code === Status.UNAVAILABLE, inspect(ended));
    await assert.rejects(stat(socket), /ENOENT/);
  });
});
