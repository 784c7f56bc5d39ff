import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type Client,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { pino } from 'pino';
import { correlationIdFrom } from '../../src/adapters/grpc/correlation.js';
import { type SocketServer, startSocketServer } from '../../src/adapters/grpc/socket-server.js';
import { startTracing, type Tracing } from '../../src/adapters/tracing/tracing.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { tempRoot } from '../support/cli.js';
import { rawUnaryMethod } from '../support/raw-service.js';
import { until } from '../support/until.js';

/*
 * The tracing adapter with an in-process exporter, on the real socket server: the call's
 * correlation id leads to its trace id (what the log reads to stamp envelopes), a traceparent
 * makes the call a child of the caller's span, and committed events of a traced call
 * become child spans carrying their seq.
 */

const method = rawUnaryMethod('/test.Traced/Call');
const service: ServiceDefinition = { Call: method };
type Traced = Client & { Call(r: Buffer, m: Metadata, cb: (e: Error | null, r: Buffer) => void): void };

describe('tracing with an in-process exporter', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  let server: SocketServer;
  let temp: { dir: string; cleanup: () => Promise<void> };
  let client: Traced;
  let seenInHandler: string | undefined;

  before(async () => {
    temp = await tempRoot('cri-ledger-tracing-');
    tracing = startTracing({ exporter, node: 'test-node', version: '0.0.0', exportIntervalMs: 200 });
    server = await startSocketServer({
      socketPath: join(temp.dir, 'cri.sock'),
      services: [
        {
          definition: service,
          implementation: {
            Call(call: { metadata: Metadata }, done: (e: null, r: Buffer) => void) {
              // What the log does at append(): the trace id of the call with the event's correlation id.
              const correlationId = correlationIdFrom(call.metadata)!;
              seenInHandler = tracing.traceIdFor(correlationId);
              const event = (seq: number, type: string) =>
                ({
                  seq,
                  type,
                  stream: 'container-x',
                  id: `e${seq}`,
                  at: new Date().toISOString(),
                  correlationId,
                }) as unknown as LedgerEvent;
              tracing.onCommit([event(7, 'NameReserved'), event(8, 'SpecGenerated')]);
              done(null, Buffer.from('ok'));
            },
          },
        },
      ],
      logger: pino({ level: 'silent' }),
      observers: [tracing.observer],
    });
    const Constructor = makeGenericClientConstructor(service, 'Traced');
    client = new Constructor(`unix://${server.socketPath}`, credentials.createInsecure()) as unknown as Traced;
  });
  after(async () => {
    client?.close();
    await server?.close(1_000);
    await tracing?.shutdown();
    await temp?.cleanup();
  });

  it("ties the call's correlation id to its trace, under the caller's, and makes its events child spans with their seq", async () => {
    const metadata = new Metadata();
    metadata.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    await new Promise<Buffer>((resolve, reject) =>
      client.Call(Buffer.alloc(1), metadata, (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.equal(seenInHandler, '0af7651916cd43dd8448eb211c80319c');
    await until('the spans', async () => exporter.getFinishedSpans().length >= 3, 10_000);
    const spans = exporter.getFinishedSpans();
    const call = spans.find((s) => s.name === 'test.Traced/Call')!;
    assert.equal(call.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(call.parentSpanContext?.spanId, 'b7ad6b7169203331');
    assert.notEqual(call.attributes['cri_ledger.correlation_id'], '', 'the correlation id is on the span');
    const steps = spans.filter((s) => s.parentSpanContext?.spanId === call.spanContext().spanId);
    assert.deepEqual(
      steps.map((s) => [s.name, s.attributes['cri_ledger.seq']]),
      [
        ['NameReserved', 7],
        ['SpecGenerated', 8],
      ],
    );
  });

  it('gives a call without a traceparent a trace of its own, and nothing outside a call', async () => {
    await new Promise<Buffer>((resolve, reject) =>
      client.Call(Buffer.alloc(1), new Metadata(), (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.match(seenInHandler ?? '', /^[0-9a-f]{32}$/);
    assert.notEqual(seenInHandler, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(tracing.traceIdFor('not-a-call'), undefined, 'an id no call has is not traced');
  });
});
