import { Readable, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import type { SessionKind } from '../contracts.js';
import { endWritable } from '../end-writable.js';
import { RemoteCommandSession } from '../remote-command-session.js';
import { ResizeDecoder } from '../resize-decoder.js';
import { effectiveOptions, type StreamingOptions } from '../streaming-options.js';
import { ChannelSocket } from './channel-socket.js';

export interface WebSocketRemoteCommandContext {
  readonly ws: WebSocket;
  readonly kind: SessionKind;
  /** The negotiated subprotocol; '' when the client named none (kubelet then speaks binary `channel.k8s.io`). */
  readonly protocol: string;
  readonly options: StreamingOptions;
  readonly onActivity: () => void;
}

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

/**
 * Exec and attach over WebSocket, with kubelet's channels: 0 stdin, 1 stdout, 2 stderr,
 * 3 the error status, 4 resize. As kubelet does, an empty message goes out at once on the
 * lowest channel this side writes, so the client knows the session is up. stdin ends on
 * v5's close signal for channel 0, or when the connection closes.
 */
export function openWebSocketRemoteCommand(ctx: WebSocketRemoteCommandContext): RemoteCommandSession {
  const options = effectiveOptions(ctx.options);
  const counted = { in: 0, out: 0 };
  const decoder = new ResizeDecoder();
  let session: RemoteCommandSession | undefined;

  const stdin = options.stdin
    ? new Readable({
        read: () => socket.resume(),
      })
    : undefined;
  let stdinOpen = stdin !== undefined;
  const endStdin = (): void => {
    if (stdinOpen) stdin?.push(null);
    stdinOpen = false;
  };
  const output = (channel: number): Writable =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        counted.out += chunk.length;
        socket.send(channel, chunk, () => done());
      },
    });
  const stdout = options.stdout ? output(STDOUT) : undefined;
  const stderr = options.stderr ? output(STDERR) : undefined;

  const socket = new ChannelSocket(ctx.ws, ctx.protocol, {
    onData(channel, data) {
      if (channel === STDIN && stdin && stdinOpen) {
        counted.in += data.length;
        if (!stdin.push(data)) socket.pause();
      } else if (channel === RESIZE) {
        for (const size of decoder.push(data)) session?.resized(size);
      }
    },
    onChannelClose(channel) {
      if (channel === STDIN) endStdin();
    },
    onActivity: ctx.onActivity,
    onClose() {
      session?.end('client-gone');
      endStdin();
    },
  });

  session = new RemoteCommandSession({
    kind: ctx.kind,
    protocol: ctx.protocol || 'channel.k8s.io',
    tty: options.tty,
    ...(options.command ? { command: options.command } : {}),
    ...(stdin ? { stdin } : {}),
    ...(stdout ? { stdout } : {}),
    ...(stderr ? { stderr } : {}),
    link: {
      transport: 'websocket',
      async finish(statusText) {
        // Output first: the client takes the status as the session's last word.
        await Promise.all([stdout, stderr].filter((w) => w !== undefined).map((w) => endWritable(w)));
        if (statusText !== undefined) await new Promise<void>((r) => socket.send(ERROR, Buffer.from(statusText), r));
        socket.close();
      },
      destroy: () => socket.destroy(),
      bytes: () => ({ ...counted }),
    },
  });
  socket.send(options.stdout ? STDOUT : options.stderr ? STDERR : ERROR, Buffer.alloc(0));
  return session;
}
