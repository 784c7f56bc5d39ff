import { ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';

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

export function rpcMetricsInterceptor(registry: Registry): ServerInterceptor {
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
  return (method, call) => {
    const slash = method.path.lastIndexOf('/');
    const labels = {
      grpc_type: callType(method.requestStream, method.responseStream),
      grpc_service: method.path.slice(1, slash),
      grpc_method: method.path.slice(slash + 1),
    };
    const startedAt = performance.now();
    started.inc(labels);
    let done = false;
    const finish = (code: Status): void => {
      if (done) return;
      done = true;
      handled.inc({ ...labels, grpc_code: Status[code] ?? String(code) });
      seconds.observe(labels, (performance.now() - startedAt) / 1000);
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({ onCancel: () => finish(Status.CANCELLED) });
      },
      sendStatus(status, next) {
        finish(status.code);
        next(status);
      },
    });
  };
}

function callType(requestStream: boolean, responseStream: boolean): string {
  if (requestStream && responseStream) return 'bidi_stream';
  if (requestStream) return 'client_stream';
  return responseStream ? 'server_stream' : 'unary';
}
