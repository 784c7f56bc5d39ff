import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ExportResultCode } from '@opentelemetry/core';
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import {
  EXPORT_CHUNK_SPANS,
  MAX_PENDING_SPANS,
  parseTraceparent,
  startTracing,
} from '../../src/adapters/tracing/tracing.js';
import type { LedgerEvent } from '../../src/domain/events.js';

/*
 * The tracing adapter's own logic, without a socket: which traceparent values make a
 * call a child, what an unsampled caller gets, how spans leave (in chunks, and dropped
 * past the bound rather than held). The socket and the OTLP wire are in
 * test/int/tracing.int.test.ts and test/e2e/tracing.e2e.test.ts.
 */

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';

function startCall(tracing: ReturnType<typeof startTracing>, correlationId: string, traceparent?: string) {
  const metadata = new Metadata();
  if (traceparent) metadata.set('traceparent', traceparent);
  return tracing.observer.callStarted({
    path: '/runtime.v1.RuntimeService/CreateContainer',
    requestStream: false,
    responseStream: false,
    metadata,
    correlationId,
  });
}

const event = (seq: number, correlationId: string): LedgerEvent =>
  ({
    seq,
    type: 'NameReserved',
    stream: 'container-x',
    id: `e${seq}`,
    at: new Date().toISOString(),
    correlationId,
  }) as unknown as LedgerEvent;

describe('parseTraceparent', () => {
  it("reads version 00's trace id, parent span id and sampled flag", () => {
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-01`), { traceId: TRACE, spanId: PARENT, sampled: true });
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, spanId: PARENT, sampled: false });
    assert.equal(parseTraceparent(` 00-${TRACE}-${PARENT}-01 `)?.traceId, TRACE, 'surrounding blanks are allowed');
  });

  it('accepts a later version with more fields, and refuses what W3C Trace Context calls invalid', () => {
    assert.equal(parseTraceparent(`01-${TRACE}-${PARENT}-01-extra`)?.spanId, PARENT);
    for (const bad of [
      undefined,
      '',
      `ff-${TRACE}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}-01-extra`,
      `00-${'0'.repeat(32)}-${PARENT}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE.toUpperCase()}-${PARENT}-01`,
      `00-${TRACE.slice(1)}-${PARENT}-01`,
    ])
      assert.equal(parseTraceparent(bad), undefined, `${bad} is refused`);
  });
});

describe('startTracing', () => {
  it("records an unsampled caller's call in its trace for the log, and exports no span of it", async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = startTracing({ exporter, node: 'n', version: '0' });
    const end = startCall(tracing, 'c1', `00-${TRACE}-${PARENT}-00`);
    assert.equal(end, undefined, 'nothing to hear at its end');
    assert.equal(tracing.traceIdFor('c1'), TRACE);
    tracing.onCommit([event(1, 'c1')]);
    await tracing.shutdown();
    assert.deepEqual(exporter.getFinishedSpans(), []);
  });

  it('sends spans in requests of EXPORT_CHUNK_SPANS, with the call span, its status and its steps', async () => {
    const requests: number[] = [];
    const spans: ReadableSpan[] = [];
    const exporter: SpanExporter = {
      export(batch, done) {
        requests.push(batch.length);
        spans.push(...batch);
        done({ code: ExportResultCode.SUCCESS });
      },
      shutdown: async () => undefined,
    };
    const tracing = startTracing({ exporter, node: 'n', version: '0' });
    const calls = EXPORT_CHUNK_SPANS + 10;
    for (let i = 0; i < calls; i++) {
      const end = startCall(tracing, `c${i}`)!;
      tracing.onCommit([event(i, `c${i}`)]);
      end(i === 0 ? Status.NOT_FOUND : Status.OK, i === 0 ? 'no such container' : undefined);
    }
    await tracing.shutdown();
    assert.equal(spans.length, calls * 2);
    assert.ok(
      requests.every((n) => n <= EXPORT_CHUNK_SPANS),
      `every request holds at most ${EXPORT_CHUNK_SPANS}: ${requests.join(',')}`,
    );
    const first = spans.find((s) => s.attributes['cri_ledger.correlation_id'] === 'c0')!;
    assert.equal(first.name, 'runtime.v1.RuntimeService/CreateContainer');
    assert.deepEqual(first.status, { code: 2, message: 'no such container' });
    assert.equal(first.attributes['rpc.grpc.status_code'], Status.NOT_FOUND);
    assert.equal(first.parentSpanContext, undefined, 'a call without traceparent is a root');
    const step = spans.find((s) => s.parentSpanContext?.spanId === first.spanContext().spanId)!;
    assert.equal(step.name, 'NameReserved');
    assert.equal(step.spanContext().traceId, first.spanContext().traceId);
    assert.ok(
      step.endTime[0] * 1e9 + step.endTime[1] >= step.startTime[0] * 1e9 + step.startTime[1],
      'a step ends after it starts',
    );
  });

  it('drops spans past MAX_PENDING_SPANS while the exporter is stuck, and says how many', async () => {
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    const problems: number[] = [];
    const exporter: SpanExporter = {
      export(_batch, done) {
        stuck.then(
          () => done({ code: ExportResultCode.SUCCESS }),
          () => undefined,
        );
      },
      shutdown: async () => undefined,
    };
    const tracing = startTracing({
      exporter,
      node: 'n',
      version: '0',
      onExportProblem: ({ dropped }) => dropped && problems.push(dropped),
    });
    for (let i = 0; i < MAX_PENDING_SPANS + 100; i++) startCall(tracing, `c${i}`)!(Status.OK, undefined);
    assert.equal(tracing.dropped(), 100);
    release();
    await tracing.shutdown();
    assert.deepEqual(problems, [100]);
  });
});
