import type { Socket } from 'node:net';
import type { SessionKind } from '../contracts.js';
import { RemoteCommandSession } from '../remote-command-session.js';
import { ResizeDecoder } from '../resize-decoder.js';
import { effectiveOptions, type StreamingOptions, supportsResize } from '../streaming-options.js';
import { SpdyConnection } from './spdy-connection.js';
import type { SpdyStream } from './spdy-stream.js';
import { endWritable } from '../end-writable.js';

export interface SpdyRemoteCommandContext {
  readonly socket: Socket;
  readonly head: Buffer;
  readonly kind: SessionKind;
  readonly protocol: string;
  readonly options: StreamingOptions;
  readonly creationTimeoutMs: number;
  readonly onActivity: () => void;
}

type StreamType = 'error' | 'stdin' | 'stdout' | 'stderr' | 'resize';

/**
 * Exec and attach over SPDY, as kubelet's remotecommand server: the client opens one
 * stream per channel, named by its `streamType` header; the session starts once the
 * error stream and each stream the request asked for are open (resize too, with a tty,
 * from v3 on), and the connection is dropped if they are not open within the creation
 * timeout. Resolves with the session, or undefined when it never started.
 */
export function openSpdyRemoteCommand(ctx: SpdyRemoteCommandContext): Promise<RemoteCommandSession | undefined> {
  const options = effectiveOptions(ctx.options);
  const resize = supportsResize(ctx.protocol);
  const known = new Set<string>(['error', 'stdin', 'stdout', 'stderr', ...(resize ? ['resize'] : [])]);
  const expected = 1 + Number(options.stdin) + Number(options.stdout) + Number(options.stderr);
  const want = expected + Number(options.tty && resize);
  const streams = new Map<StreamType, SpdyStream>();
  let session: RemoteCommandSession | undefined;

  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      connection.destroy();
      resolve(undefined);
    }, ctx.creationTimeoutMs);
    timer.unref();

    const connection = new SpdyConnection(ctx.socket, ctx.head, {
      // Every stream is taken, as kubelet's handler does; one of an unknown type is read and dropped.
      accept: () => true,
      onStream(stream) {
        const type = stream.header('streamtype') ?? '';
        if (session || !known.has(type)) {
          stream.resume();
          return;
        }
        streams.set(type as StreamType, stream);
        if (streams.size < want) return;
        clearTimeout(timer);
        session = start(ctx, options, streams, connection);
        resolve(session);
      },
      onActivity: ctx.onActivity,
      onClose(error) {
        clearTimeout(timer);
        if (session) session.end(error ? 'error' : 'client-gone');
        else resolve(undefined);
      },
    });
  });
}

function start(
  ctx: SpdyRemoteCommandContext,
  options: StreamingOptions,
  streams: Map<StreamType, SpdyStream>,
  connection: SpdyConnection,
): RemoteCommandSession {
  const stdin = options.stdin ? streams.get('stdin') : undefined;
  const stdout = options.stdout ? streams.get('stdout') : undefined;
  const stderr = options.stderr ? streams.get('stderr') : undefined;
  const error = streams.get('error');
  const session = new RemoteCommandSession({
    kind: ctx.kind,
    protocol: ctx.protocol,
    tty: options.tty,
    ...(options.command ? { command: options.command } : {}),
    ...(stdin ? { stdin } : {}),
    ...(stdout ? { stdout } : {}),
    ...(stderr ? { stderr } : {}),
    link: {
      transport: 'spdy',
      async finish(statusText) {
        if (statusText !== undefined && error) await writeAll(error, statusText);
        // Every stream half-closed (FIN), then GOAWAY: the client reads stdout, stderr and
        // the error stream to their end, then closes the connection.
        await Promise.all([...streams.values()].map((s) => endWritable(s)));
        connection.end();
      },
      destroy: () => connection.destroy(),
      bytes: () => ({ in: stdin?.bytesIn ?? 0, out: (stdout?.bytesOut ?? 0) + (stderr?.bytesOut ?? 0) }),
    },
  });
  const resizeStream = streams.get('resize');
  if (resizeStream) {
    const decoder = new ResizeDecoder();
    resizeStream.on('data', (chunk: Buffer) => {
      for (const size of decoder.push(chunk)) session.resized(size);
    });
  }
  return session;
}

function writeAll(stream: SpdyStream, text: string): Promise<void> {
  return new Promise((resolve) => stream.write(text, () => resolve()));
}
