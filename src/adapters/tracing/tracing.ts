import { randomFillSync } from 'node:crypto';
import { type HrTime, type SpanContext, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { status as Status } from '@grpc/grpc-js';
import type { LedgerEvent } from '../../domain/events.js';
import type { CallObserver } from '../grpc/call-interceptor.js';

/*
 * OTLP traces, off unless an endpoint is configured. Every call on the socket is a
 * server span, a child of the caller's span when its metadata carries a W3C
 * `traceparent` (as containerd's CRI honours it). Every event a call causes carries the
 * call's correlation id, so the log asks `traceIdFor(correlationId)` and stamps the
 * trace id in the envelope (`traceId`); the span carries the correlation id: either
 * leads to the other. Each event the call records becomes a child span from the previous
 * event of its stream (or the call's start) to the event, with the event's seq: a
 * CreateContainer's saga steps, one span each.
 *
 * What a call pays for on its own path is a few fields noted in a plain record: ids, two
 * clock readings, its status. The spans are built from those records when a batch is
 * exported, every few seconds, off every call's path (docs/decisions.md, decision 53).
 * No async context manager either: AsyncLocalStorage would make every promise of the
 * process pay for the few places that need a trace id (measured: +5 % on
 * CreateContainer). The correlation id already ties an event to its call.
 */

/**
 * Spans are batched and sent this often: the OpenTelemetry SDK's default. Each export
 * serializes the batch on the event loop; every second, it delayed enough calls to
 * show in CreateContainer's p50 (docs/benchmarks.md, overhead).
 */
export const DEFAULT_TRACE_EXPORT_INTERVAL_MS = 5_000;
/** A call's events are traced at least this long after it started: a saga goes on past its caller's deadline. */
export const TRACE_GRACE_MS = 60_000;
/** Pending spans that start an export before the interval is up, as the SDK's batch processor does. */
export const EXPORT_NOW_SPANS = 512;
/**
 * Spans per export request. Turning spans into OTLP JSON holds the event loop (512 took
 * 4-10 ms here); in requests of 64, one after the other, no call waits more than a
 * millisecond or so behind an export.
 */
export const EXPORT_CHUNK_SPANS = 64;
/** Spans waiting for export beyond this are dropped (and counted in the log) rather than held: a collector that is down must not grow the service. */
export const MAX_PENDING_SPANS = 8_192;

export interface Tracing {
  /** Makes each call on the socket a span. */
  observer: CallObserver;
  /** The trace id of the call with this correlation id, while it is traced: for the log's envelopes. */
  traceIdFor(correlationId: string): string | undefined;
  /** Turns the events of traced calls into step spans; give it the log's commits. */
  onCommit(events: readonly LedgerEvent[]): void;
  /** Spans dropped because the export could not keep up (MAX_PENDING_SPANS). */
  dropped(): number;
  /** Exports what is pending, then shuts the exporter down. */
  shutdown(): Promise<void>;
}

/** A traced call, from its start until its grace has passed. */
interface TracedCall {
  traceId: string;
  spanId: string;
  /** Whether its spans are recorded (the caller's sampled flag; our own calls always are). */
  sampled: boolean;
  /** Epoch ms of its start. */
  startedAt: number;
  /** Epoch ms of the last event of each stream it touched. */
  last: Map<string, number> | undefined;
}

/** What a span is made from at export time. */
interface SpanRecord {
  name: string;
  kind: SpanKind;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  traceState: string | undefined;
  /** Epoch ms. */
  start: number;
  end: number;
  attributes: Record<string, string | number>;
  code: SpanStatusCode;
  message: string | undefined;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The caller's span from a W3C `traceparent` (as @opentelemetry/core's propagator accepts it), or undefined. */
export function parseTraceparent(
  value: string | undefined,
): { traceId: string; spanId: string; sampled: boolean } | undefined {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  // Version ff is invalid; version 00 has exactly four fields.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** Random ids from a pooled buffer: one getrandom call per 256 span ids. */
function idSource(): (bytes: number) => string {
  const pool = Buffer.alloc(4096);
  let at = pool.length;
  return (bytes) => {
    if (at + bytes > pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    const id = pool.toString('hex', at, at + bytes);
    at += bytes;
    return id;
  };
}

const hrTime = (epochMs: number): HrTime => {
  const seconds = Math.floor(epochMs / 1000);
  return [seconds, Math.round((epochMs - seconds * 1000) * 1e6)];
};

export function startTracing(o: {
  endpoint?: string;
  exporter?: SpanExporter;
  node: string;
  version: string;
  /** How often spans are exported; DEFAULT_TRACE_EXPORT_INTERVAL_MS unless a test says. */
  exportIntervalMs?: number;
  /** Told when spans are dropped or an export fails. */
  onExportProblem?: (problem: { dropped?: number; error?: Error }) => void;
}): Tracing {
  const exporter = o.exporter ?? new OTLPTraceExporter({ url: o.endpoint });
  const resource: Resource = resourceFromAttributes({
    'service.name': 'cri-ledger',
    'service.version': o.version,
    'host.name': o.node,
  });
  const scope = { name: 'cri-ledger' };
  const newId = idSource();
  const now = (): number => performance.timeOrigin + performance.now();

  // Calls by correlation id in two generations: a call stays findable for one to two
  // graces, and forgetting them is one swap, not a timer per call.
  let calls = new Map<string, TracedCall>();
  let older = new Map<string, TracedCall>();
  const find = (correlationId: string): TracedCall | undefined => calls.get(correlationId) ?? older.get(correlationId);
  const forget = setInterval(() => {
    older = calls;
    calls = new Map();
  }, TRACE_GRACE_MS);
  forget.unref();

  const pending: SpanRecord[] = [];
  let dropped = 0;
  const record = (span: SpanRecord): void => {
    if (pending.length >= MAX_PENDING_SPANS) {
      dropped++;
      return;
    }
    pending.push(span);
    if (pending.length === EXPORT_NOW_SPANS) setImmediate(() => void flush());
  };

  const observer: CallObserver = {
    callStarted({ path, metadata, correlationId }) {
      const parent = parseTraceparent(metadata.get('traceparent')[0]?.toString());
      const startedAt = now();
      const call: TracedCall = {
        traceId: parent?.traceId ?? newId(16),
        spanId: newId(8),
        sampled: parent?.sampled ?? true,
        startedAt,
        last: undefined,
      };
      calls.set(correlationId, call);
      if (!call.sampled) return undefined;
      const traceState = parent ? metadata.get('tracestate')[0]?.toString() : undefined;
      return (code, details) =>
        record({
          name: path.slice(1),
          kind: SpanKind.SERVER,
          traceId: call.traceId,
          spanId: call.spanId,
          parentSpanId: parent?.spanId,
          traceState,
          start: startedAt,
          end: now(),
          attributes: {
            'rpc.system': 'grpc',
            'rpc.service': path.slice(1, path.lastIndexOf('/')),
            'rpc.method': path.slice(path.lastIndexOf('/') + 1),
            'cri_ledger.correlation_id': correlationId,
            'rpc.grpc.status_code': code,
          },
          code: code === Status.OK ? SpanStatusCode.UNSET : SpanStatusCode.ERROR,
          message: code === Status.OK ? undefined : (details ?? Status[code] ?? ''),
        });
    },
  };

  const toReadable = (r: SpanRecord): ReadableSpan => {
    const context: SpanContext = {
      traceId: r.traceId,
      spanId: r.spanId,
      traceFlags: 1,
      ...(r.traceState ? { traceState: new TraceState(r.traceState) } : {}),
    };
    return {
      name: r.name,
      kind: r.kind,
      spanContext: () => context,
      ...(r.parentSpanId
        ? {
            parentSpanContext: {
              traceId: r.traceId,
              spanId: r.parentSpanId,
              traceFlags: 1,
              isRemote: r.kind === SpanKind.SERVER,
            },
          }
        : {}),
      startTime: hrTime(r.start),
      endTime: hrTime(r.end),
      duration: hrTime(r.end - r.start),
      status: r.message === undefined ? { code: r.code } : { code: r.code, message: r.message },
      attributes: r.attributes,
      links: [],
      events: [],
      ended: true,
      resource,
      instrumentationScope: scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
  };

  let exporting: Promise<void> | undefined;
  let reportedDropped = 0;
  const exportBatch = (batch: SpanRecord[]): Promise<void> =>
    new Promise((done) =>
      exporter.export(batch.map(toReadable), (result) => {
        if (result.error) o.onExportProblem?.({ error: result.error });
        done();
      }),
    );
  const flush = (): Promise<void> => {
    exporting ??= (async () => {
      while (pending.length > 0) {
        await exportBatch(pending.splice(0, EXPORT_CHUNK_SPANS));
        // Calls waiting on the loop go between two chunks.
        await new Promise((next) => setImmediate(next));
      }
      if (dropped > reportedDropped) {
        o.onExportProblem?.({ dropped: dropped - reportedDropped });
        reportedDropped = dropped;
      }
    })().finally(() => {
      exporting = undefined;
    });
    return exporting;
  };
  const exportTimer = setInterval(() => void flush(), o.exportIntervalMs ?? DEFAULT_TRACE_EXPORT_INTERVAL_MS);
  exportTimer.unref();

  return {
    observer,
    traceIdFor: (correlationId) => find(correlationId)?.traceId,
    onCommit(events) {
      for (const e of events) {
        const call = find(e.correlationId);
        if (!call?.sampled) continue;
        const at = Date.parse(e.at);
        call.last ??= new Map();
        const from = Math.min(at, call.last.get(e.stream) ?? call.startedAt);
        call.last.set(e.stream, at);
        record({
          name: e.type,
          kind: SpanKind.INTERNAL,
          traceId: call.traceId,
          spanId: newId(8),
          parentSpanId: call.spanId,
          traceState: undefined,
          start: from,
          end: at,
          attributes: { 'cri_ledger.seq': e.seq, 'cri_ledger.stream': e.stream, 'cri_ledger.event_id': e.id },
          code: SpanStatusCode.UNSET,
          message: undefined,
        });
      }
    },
    dropped: () => dropped,
    async shutdown() {
      clearInterval(forget);
      clearInterval(exportTimer);
      await exporting;
      await flush();
      await exporter.shutdown();
    },
  };
}
