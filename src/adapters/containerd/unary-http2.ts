import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as connectHttp2,
  constants as h2,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { connect as connectSocket } from 'node:net';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';

/*
 * containerd's unary calls straight over one HTTP/2 connection (node:http2), without
 * grpc-js's channel stack. A unary gRPC call is one HTTP/2 stream: a POST whose body is
 * one length-prefixed message, answered by headers, one message and trailers carrying
 * grpc-status. grpc-js wraps that in a resolver, a load balancer, a retrying call,
 * filters and interceptors; measured against this containerd, a unary call there cost
 * 0.28 ms of CPU in a tight loop and 1.4-1.5 ms when calls are 20 ms apart, against
 * 0.11 and 0.8-1.1 ms here (docs/decisions.md, decision 56). An exec makes four such calls, a
 * CreateContainer more, each on the request's path.
 *
 * Streaming calls (events, content, listings) stay on grpc-js. What a caller sees is
 * grpc-js's: errors are ServiceErrors with the same codes (UNAVAILABLE while containerd
 * is down or the connection drops, DEADLINE_EXCEEDED from our own timer, CANCELLED on
 * abort); the deadline reaches containerd as grpc-timeout. A dropped connection is made
 * again by the next call, with no backoff: on a local socket a refused connect costs
 * microseconds, and the first call after containerd is back gets through.
 */

/** What a unary method needs: its path and its message codecs (a grpc-js method definition). */
export interface UnaryMethod {
  path: string;
  requestSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

export interface UnaryCallTiming {
  /** Epoch ms; none means no deadline. */
  deadline?: number;
  signal?: AbortSignal;
  /** Extra request headers (a lease). */
  headers?: Readonly<Record<string, string>>;
}

/** The receive window a connection and each call start with: a container list arrives in one go. */
const WINDOW_BYTES = 16 * 1024 * 1024;

export class Http2UnaryTransport {
  #session: ClientHttp2Session | undefined;
  #closed = false;
  /** How to end each call in flight. */
  readonly #active = new Set<(code: Status, text: string) => void>();

  constructor(
    private readonly socketPath: string,
    private readonly baseHeaders: Readonly<Record<string, string>>,
    private readonly maxMessageBytes: number,
  ) {}

  /** One unary call; rejects with a grpc-js-shaped ServiceError. */
  call(method: UnaryMethod, request: unknown, timing: UnaryCallTiming = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let frame: Buffer;
      try {
        frame = messageFrame(method.requestSerialize(request));
      } catch (error) {
        return reject(serviceError(Status.INTERNAL, `request serialization failure: ${errorText(error)}`));
      }
      if (frame.length - 5 > this.maxMessageBytes)
        return reject(
          serviceError(
            Status.RESOURCE_EXHAUSTED,
            `Sent message larger than max (${frame.length - 5} vs. ${this.maxMessageBytes})`,
          ),
        );
      if (this.#closed) return reject(serviceError(Status.UNAVAILABLE, 'Channel has been shut down'));
      const headers: OutgoingHttpHeaders = {
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: method.path,
        [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        [h2.HTTP2_HEADER_TE]: 'trailers',
        ...this.baseHeaders,
        ...timing.headers,
      };
      if (timing.deadline !== undefined) headers['grpc-timeout'] = grpcTimeout(timing.deadline - Date.now());
      let session: ClientHttp2Session;
      let stream: ClientHttp2Stream;
      try {
        session = this.#connection();
        stream = session.request(headers, { endStream: false });
      } catch (error) {
        return reject(serviceError(Status.UNAVAILABLE, `No connection established: ${errorText(error)}`));
      }
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (error: ServiceError | undefined, value?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        timing.signal?.removeEventListener('abort', onAbort);
        this.#active.delete(cancel);
        if (this.#active.size === 0) session.unref();
        if (error) reject(error);
        else resolve(value);
      };
      const cancel = (code: Status, text: string): void => {
        finish(serviceError(code, text));
        if (!stream.closed) stream.close(h2.NGHTTP2_CANCEL);
      };
      const onAbort = (): void => cancel(Status.CANCELLED, 'Cancelled on client');
      this.#active.add(cancel);
      session.ref();
      if (timing.deadline !== undefined)
        timer = setTimeout(
          () => cancel(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'),
          Math.max(0, timing.deadline - Date.now()),
        );
      timing.signal?.addEventListener('abort', onAbort, { once: true });

      let grpcStatus: number | undefined;
      let grpcMessage = '';
      let trailers: IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      const readStatus = (h: IncomingHttpHeaders): void => {
        const code = h['grpc-status'];
        if (code === undefined) return;
        grpcStatus = Number(code);
        grpcMessage = percentDecoded(String(h['grpc-message'] ?? ''));
        trailers = h;
      };
      stream.on('response', (h) => {
        const httpStatus = Number(h[h2.HTTP2_HEADER_STATUS]);
        if (httpStatus !== 200 && h['grpc-status'] === undefined)
          return cancel(httpStatusCode(httpStatus), `Received HTTP status code ${httpStatus}`);
        readStatus(h); // trailers-only: the status comes with the headers
      });
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received - 5 > this.maxMessageBytes)
          return cancel(
            Status.RESOURCE_EXHAUSTED,
            `Received message larger than max (${received - 5} vs. ${this.maxMessageBytes})`,
          );
        chunks.push(chunk);
      });
      stream.on('error', () => undefined); // 'close' says how it ended
      stream.on('close', () => {
        if (settled) return;
        if (grpcStatus === undefined) {
          const code = stream.rstCode;
          return finish(
            session.destroyed || code === h2.NGHTTP2_REFUSED_STREAM || code === undefined
              ? serviceError(Status.UNAVAILABLE, 'Connection dropped')
              : code === h2.NGHTTP2_CANCEL
                ? serviceError(Status.CANCELLED, 'Call cancelled')
                : serviceError(Status.INTERNAL, `Received RST_STREAM with code ${code}`),
          );
        }
        if (grpcStatus !== Status.OK)
          return finish(serviceError(grpcStatus as Status, grpcMessage, metadataOf(trailers)));
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5)
          return finish(serviceError(Status.INTERNAL, 'Response is not one uncompressed message'));
        let value: unknown;
        try {
          value = method.responseDeserialize(body.subarray(5));
        } catch (error) {
          return finish(serviceError(Status.INTERNAL, `Response deserialization failure: ${errorText(error)}`));
        }
        finish(undefined, value);
      });
      stream.end(frame);
    });
  }

  /** Ends the connection; calls in flight fail with CANCELLED, later ones with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    for (const cancel of this.#active) cancel(Status.CANCELLED, 'Channel has been shut down');
    this.#session?.destroy();
    this.#session = undefined;
  }

  #connection(): ClientHttp2Session {
    const current = this.#session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = connectHttp2('http://localhost', {
      createConnection: () => connectSocket(this.socketPath),
      settings: { enablePush: false, initialWindowSize: WINDOW_BYTES },
    });
    session.on('connect', () => session.setLocalWindowSize(WINDOW_BYTES));
    session.on('error', () => undefined); // each call sees the drop
    // After GOAWAY (containerd stopping) new calls need a new connection; calls already
    // on this one still get their answers. A call on a connection that closes is
    // destroyed with it: its stream's 'close' reports UNAVAILABLE.
    const gone = (): void => {
      if (this.#session === session) this.#session = undefined;
    };
    session.on('goaway', gone);
    session.on('close', gone);
    session.unref();
    this.#session = session;
    return session;
  }
}

function messageFrame(body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

/** gRPC's grpc-timeout: at most 8 digits and a unit. */
function grpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  return whole < 1e8 ? `${whole}m` : `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}

function serviceError(code: Status, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata });
}

function metadataOf(headers: IncomingHttpHeaders | undefined): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key.startsWith(':') || key.startsWith('grpc-') || key.endsWith('-bin') || value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) metadata.add(key, one);
  }
  return metadata;
}

/** gRPC's mapping of an HTTP status without grpc-status. */
function httpStatusCode(httpStatus: number): Status {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

function percentDecoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
