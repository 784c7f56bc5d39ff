import type { Socket } from 'node:net';
import { PortForwardSession } from '../port-forward-session.js';
import type { SpdyHeaders } from './spdy-headers.js';
import { headerValue } from './spdy-headers.js';
import { SpdyConnection } from './spdy-connection.js';
import type { SpdyStream } from './spdy-stream.js';

export interface SpdyPortForwardContext {
  readonly socket: Socket;
  readonly head: Buffer;
  readonly creationTimeoutMs: number;
  readonly onActivity: () => void;
}

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** kubelet's check of a port-forward stream's headers: a port in 1-65535 and a data or error stream type. */
export function acceptPortForwardStream(headers: SpdyHeaders): boolean {
  const port = headerValue(headers, 'port') ?? '';
  const type = headerValue(headers, 'streamtype');
  return /^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535 && (type === 'data' || type === 'error');
}

/**
 * Port forwarding over SPDY (`portforward.k8s.io`), as kubelet serves it: each request is
 * a pair of streams the client opens with the same `requestID` header, an error stream
 * and a data stream, both naming the `port`. A pair is handed to the session once both
 * are open; a pair still incomplete after the creation timeout gets kubelet's message on
 * its error stream. Any number of requests run at once on one connection.
 */
export function openSpdyPortForward(ctx: SpdyPortForwardContext): PortForwardSession {
  const session = new PortForwardSession('spdy', 'portforward.k8s.io');
  const pairs = new Map<string, Pair>();
  const live = new Set<SpdyStream>();
  const total = { in: 0, out: 0 };

  const connection = new SpdyConnection(ctx.socket, ctx.head, {
    accept: acceptPortForwardStream,
    onStream(stream) {
      const id = requestId(stream);
      let pair = pairs.get(id);
      if (!pair) {
        const timer = setTimeout(() => {
          pairs.delete(id);
          pair?.error?.end(`(conn=${ctx.socket.remoteAddress ?? ''}, request=${id}) timed out waiting for streams`);
          pair?.data?.reset();
        }, ctx.creationTimeoutMs);
        timer.unref();
        pair = { timer };
        pairs.set(id, pair);
      }
      const type = stream.header('streamtype') === 'data' ? 'data' : 'error';
      if (pair[type]) {
        pair.error?.write(`error processing stream for request ${id}: ${type} stream already assigned`);
        stream.reset();
        return;
      }
      pair[type] = stream;
      const { data, error } = pair;
      if (!data || !error) return;
      clearTimeout(pair.timer);
      pairs.delete(id);
      // The request is over once the handler ends `data`: the error stream then ends too,
      // after anything written on it, as kubelet closes both.
      data.once('finish', () => error.end());
      live.add(data);
      data.once('close', () => {
        live.delete(data);
        total.in += data.bytesIn;
        total.out += data.bytesOut;
      });
      session.request({ port: Number(data.header('port')), data, error });
    },
    onActivity: ctx.onActivity,
    onClose(error) {
      for (const pair of pairs.values()) clearTimeout(pair.timer);
      pairs.clear();
      session.end(error ? 'error' : 'client-gone');
    },
  });

  session.attach({
    transport: 'spdy',
    end: () => connection.end(),
    destroy: () => connection.destroy(),
    bytes() {
      let bytesIn = total.in;
      let bytesOut = total.out;
      for (const data of live) {
        bytesIn += data.bytesIn;
        bytesOut += data.bytesOut;
      }
      return { in: bytesIn, out: bytesOut };
    },
  });
  return session;
}

/**
 * The request a stream belongs to. Clients from before the `requestID` header open the
 * error stream, then the data stream, with consecutive odd ids: kubelet pairs them by id.
 */
function requestId(stream: SpdyStream): string {
  const id = stream.header('requestid');
  if (id) return id;
  return `${stream.header('streamtype') === 'error' ? stream.id : stream.id - 2}`;
}
