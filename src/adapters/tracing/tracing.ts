import {
  context,
  propagation,
  type Context,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { type Metadata, ServerInterceptingCall, type ServerInterceptor, status as Status } from '@grpc/grpc-js';
import type { LedgerEvent } from '../../domain/events.js';
import { correlationIdFrom } from '../grpc/rpc-logging.js';

/*
 * OTLP traces, off unless an endpoint is configured. Every call on the socket is a
 * server span, a child of the caller's span when its metadata carries a W3C
 * `traceparent` (as containerd's CRI honours it). The handler runs in that span's
 * context, so each event the call appends carries the trace id in its envelope
 * (`traceId`), and the span carries the call's correlation id: either leads to the other.
 * Each event the call records becomes a child span from the previous event of its
 * stream (or the call's start) to the event, with the event's seq: a CreateContainer's
 * saga steps, one span each.
 */

/** Spans are batched and sent this often, so a trace shows up within seconds. */
export const DEFAULT_TRACE_EXPORT_INTERVAL_MS = 1_000;

export interface Tracing {
  /** The interceptor that makes each call a span (innermost, inside the correlation id's). */
  interceptor: ServerInterceptor;
  /** The trace id of the call being served in the current async context, for the log's envelopes. */
  currentTraceId(): string | undefined;
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
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const tracer = provider.getTracer('cri-ledger');
  /** Calls in progress by trace id: where their events' spans go, and the last event time per stream. */
  const active = new Map<string, { ctx: Context; startedAt: number; last: Map<string, number> }>();

  const interceptor: ServerInterceptor = (method, call) => {
    let span: Span | undefined;
    let received: Metadata | undefined;
    let ctx: Context = context.active();
    let ended = false;
    const end = (code: Status, details?: string): void => {
      if (ended || !span) return;
      ended = true;
      // Read at the end: the logging interceptor may give the call its id after this one saw it.
      span.setAttribute('cri_ledger.correlation_id', (received && correlationIdFrom(received)) ?? '');
      span.setAttribute('rpc.grpc.status_code', code);
      if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: details ?? Status[code] ?? '' });
      span.end();
      active.delete(span.spanContext().traceId);
    };
    const within = (fn: () => void): void => context.with(ctx, fn);
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            received = metadata;
            const parent = propagation.extract(context.active(), metadata, metadataGetter);
            const slash = method.path.lastIndexOf('/');
            span = tracer.startSpan(
              method.path.slice(1),
              {
                kind: SpanKind.SERVER,
                attributes: {
                  'rpc.system': 'grpc',
                  'rpc.service': method.path.slice(1, slash),
                  'rpc.method': method.path.slice(slash + 1),
                },
              },
              parent,
            );
            ctx = trace.setSpan(parent, span);
            active.set(span.spanContext().traceId, { ctx, startedAt: Date.now(), last: new Map() });
            within(() => nextMetadata(metadata));
          },
          // grpc-js runs the handler from these: in the span's context, so are its appends.
          onReceiveMessage: (message, nextMessage) => within(() => nextMessage(message)),
          onReceiveHalfClose: (nextHalfClose) => within(() => nextHalfClose()),
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
    currentTraceId: () => {
      const id = trace.getSpan(context.active())?.spanContext().traceId;
      return id && active.has(id) ? id : undefined;
    },
    onCommit(events) {
      for (const e of events) {
        const call = e.traceId === undefined ? undefined : active.get(e.traceId);
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
      contextManager.disable();
    },
  };
}
