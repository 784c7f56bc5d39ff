import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { type Metadata, ServerInterceptingCall, type ServerInterceptor, status as Status } from '@grpc/grpc-js';
import type { LedgerEvent } from '../../domain/events.js';
import { newEventId } from '../ids/event-id.js';
import { CORRELATION_METADATA_KEYS, correlationIdFrom } from '../grpc/rpc-logging.js';

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
 * No async context manager: AsyncLocalStorage would make every promise of the process
 * pay for the few places that need a trace id (measured: +5 % on CreateContainer). The
 * correlation id already ties an event to its call.
 */

/**
 * Spans are batched and sent this often: the OpenTelemetry SDK's default. Each export
 * serializes the batch on the event loop; every second, it delayed enough calls to
 * show in CreateContainer's p50 (docs/benchmarks.md, overhead).
 */
export const DEFAULT_TRACE_EXPORT_INTERVAL_MS = 5_000;
/** A call's events are traced this long after it answered: a saga goes on past its caller's deadline. */
export const TRACE_GRACE_MS = 60_000;

export interface Tracing {
  /** The interceptor that makes each call a span. */
  interceptor: ServerInterceptor;
  /** The trace id of the call with this correlation id, while it is traced: for the log's envelopes. */
  traceIdFor(correlationId: string): string | undefined;
  /** Turns the events of traced calls into step spans; give it the log's commits. */
  onCommit(events: readonly LedgerEvent[]): void;
  shutdown(): Promise<void>;
}

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key).map(String);
    return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
  },
};

export function startTracing(o: {
  endpoint?: string;
  exporter?: SpanExporter;
  node: string;
  version: string;
}): Tracing {
  const exporter = o.exporter ?? new OTLPTraceExporter({ url: o.endpoint });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'cri-ledger',
      'service.version': o.version,
      'host.name': o.node,
    }),
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: DEFAULT_TRACE_EXPORT_INTERVAL_MS })],
  });
  const propagator = new W3CTraceContextPropagator();
  const tracer = provider.getTracer('cri-ledger');
  /** Traced calls by correlation id: where their events' spans go, and the last event time per stream. */
  const active = new Map<string, { traceId: string; ctx: Context; startedAt: number; last: Map<string, number> }>();

  const interceptor: ServerInterceptor = (method, call) => {
    let span: Span | undefined;
    let correlationId = '';
    let ended = false;
    const end = (code: Status, details?: string): void => {
      if (ended || !span) return;
      ended = true;
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: details ?? Status[code] ?? '' });
      span.end();
      const id = correlationId;
      setTimeout(() => active.delete(id), TRACE_GRACE_MS).unref();
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            // The id the logging interceptor would give it, given here first: the log needs it now.
            correlationId = correlationIdFrom(metadata) ?? newEventId();
            metadata.set(CORRELATION_METADATA_KEYS[0], correlationId);
            const parent = propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
            const slash = method.path.lastIndexOf('/');
            span = tracer.startSpan(
              method.path.slice(1),
              {
                kind: SpanKind.SERVER,
                attributes: {
                  'rpc.system': 'grpc',
                  'rpc.service': method.path.slice(1, slash),
                  'rpc.method': method.path.slice(slash + 1),
                  'cri_ledger.correlation_id': correlationId,
                },
              },
              parent,
            );
            const traceId = span.spanContext().traceId;
            active.set(correlationId, {
              traceId,
              ctx: trace.setSpan(parent, span),
              startedAt: Date.now(),
              last: new Map(),
            });
            nextMetadata(metadata);
          },
          onCancel: () => end(Status.CANCELLED),
        });
      },
      sendStatus(status, next) {
        end(status.code, status.details);
        next(status);
      },
    });
  };

  return {
    interceptor,
    traceIdFor: (correlationId) => active.get(correlationId)?.traceId,
    onCommit(events) {
      for (const e of events) {
        const call = active.get(e.correlationId);
        if (!call) continue;
        const at = Date.parse(e.at);
        const from = Math.min(at, call.last.get(e.stream) ?? call.startedAt);
        call.last.set(e.stream, at);
        tracer
          .startSpan(
            e.type,
            {
              startTime: from,
              attributes: { 'cri_ledger.seq': e.seq, 'cri_ledger.stream': e.stream, 'cri_ledger.event_id': e.id },
            },
            call.ctx,
          )
          .end(at);
      }
    },
    async shutdown() {
      await provider.shutdown();
    },
  };
}
