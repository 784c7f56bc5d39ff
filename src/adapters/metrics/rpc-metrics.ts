import { status as Status } from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { CallObserver, ObservedCall } from '../grpc/call-interceptor.js';

/*
 * Per-RPC metrics under the names go-grpc-prometheus gives them, which is what
 * containerd's CRI exports on its /v1/metrics and what dashboards for it already graph:
 * grpc_server_started_total, grpc_server_handled_total (with grpc_code) and
 * grpc_server_handling_seconds. Labels are the service, the method and the call type:
 * no id of a container or pod, ever.
 */

/** Latency buckets in seconds: a warm status call is well under a millisecond, a pull may take minutes. */
export const RPC_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];

const LABELS = ['grpc_type', 'grpc_service', 'grpc_method'] as const;

export function rpcMetricsObserver(registry: Registry): CallObserver {
  const started = new Counter({
    name: 'grpc_server_started_total',
    help: 'RPCs started on the server.',
    labelNames: LABELS,
    registers: [registry],
  });
  const handled = new Counter({
    name: 'grpc_server_handled_total',
    help: 'RPCs completed on the server, whatever their status code.',
    labelNames: [...LABELS, 'grpc_code'],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: 'grpc_server_handling_seconds',
    help: 'Time from the start of an RPC to its status, on the server.',
    labelNames: LABELS,
    buckets: RPC_BUCKETS_S,
    registers: [registry],
  });
  type Labels = Record<(typeof LABELS)[number], string>;
  interface Children {
    labels: Labels;
    started: Counter.Internal;
    seconds: Histogram.Internal<string>;
    handled: Map<Status, Counter.Internal>;
  }
  // Each method's labelled children, made once: prom-client hashes a label set on every inc() otherwise.
  const byPath = new Map<string, Children>();
  const childrenOf = (call: ObservedCall): Children => {
    let children = byPath.get(call.path);
    if (!children) {
      const slash = call.path.lastIndexOf('/');
      const labels: Labels = {
        grpc_type: callType(call.requestStream, call.responseStream),
        grpc_service: call.path.slice(1, slash),
        grpc_method: call.path.slice(slash + 1),
      };
      children = { labels, started: started.labels(labels), seconds: seconds.labels(labels), handled: new Map() };
      byPath.set(call.path, children);
    }
    return children;
  };
  return {
    callStarted(call) {
      const children = childrenOf(call);
      const startedAt = performance.now();
      children.started.inc();
      return (code) => {
        let handledChild = children.handled.get(code);
        if (!handledChild) {
          handledChild = handled.labels({ ...children.labels, grpc_code: Status[code] ?? String(code) });
          children.handled.set(code, handledChild);
        }
        handledChild.inc();
        children.seconds.observe((performance.now() - startedAt) / 1000);
      };
    },
  };
}

function callType(requestStream: boolean, responseStream: boolean): string {
  if (requestStream && responseStream) return 'bidi_stream';
  if (requestStream) return 'client_stream';
  return responseStream ? 'server_stream' : 'unary';
}
