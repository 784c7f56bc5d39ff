import { Duplex, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import { PortForwardSession } from '../port-forward-session.js';
import { ChannelSocket } from './channel-socket.js';

export interface WebSocketPortForwardContext {
  readonly ws: WebSocket;
  /** The chosen subprotocol; empty when the client named none (binary `channel.k8s.io`). */
  readonly protocol: string;
  readonly ports: readonly number[];
  readonly onActivity: () => void;
}

/**
 * Port forwarding over WebSocket, as kubelet serves it: one request per port the URL
 * names (`?port=80&port=443` or `?port=80,443`), on channels 2i (data, both ways) and
 * 2i+1 (error, server to client). The first message on each channel carries its port, 2
 * bytes little-endian. The connection closes once every request's data has ended.
 */
export function openWebSocketPortForward(ctx: WebSocketPortForwardContext): PortForwardSession {
  const session = new PortForwardSession('websocket', ctx.protocol || 'channel.k8s.io');
  const counted = { in: 0, out: 0 };
  const readers: Duplex[] = [];
  const readerOpen: boolean[] = [];
  const endReader = (i: number): void => {
    if (readerOpen[i]) readers[i]?.push(null);
    readerOpen[i] = false;
  };
  let open = ctx.ports.length;

  const socket = new ChannelSocket(ctx.ws, ctx.protocol, {
    onData(channel, data) {
      const reader = channel % 2 === 0 && readerOpen[channel / 2] ? readers[channel / 2] : undefined;
      if (!reader) return;
      counted.in += data.length;
      if (!reader.push(data)) socket.pause();
    },
    onChannelClose(channel) {
      if (channel % 2 === 0) endReader(channel / 2);
    },
    onActivity: ctx.onActivity,
    onClose() {
      session.end('client-gone');
      readers.forEach((_, i) => endReader(i));
    },
  });

  ctx.ports.forEach((port, i) => {
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16LE(port, 0);
    socket.send(2 * i, prefix);
    socket.send(2 * i + 1, prefix);
    const data = new Duplex({
      allowHalfOpen: true,
      read: () => socket.resume(),
      write(chunk: Buffer, _encoding, done) {
        counted.out += chunk.length;
        socket.send(2 * i, chunk, () => done());
      },
      final(done) {
        done();
        if (--open === 0) session.end('exited');
      },
    });
    const error = new Writable({
      write(chunk: Buffer, _encoding, done) {
        socket.send(2 * i + 1, chunk, () => done());
      },
    });
    readers.push(data);
    readerOpen.push(true);
    session.request({ port, data, error });
  });

  session.attach({
    transport: 'websocket',
    end: () => socket.close(),
    destroy: () => socket.destroy(),
    bytes: () => ({ ...counted }),
  });
  return session;
}

/** The ports of `?port=`, repeated or comma-separated; a message naming the problem for a bad one. */
export function portsFromQuery(values: readonly string[]): number[] | string {
  const ports: number[] = [];
  for (const value of values) {
    if (value.length === 0) return 'query parameter "port" cannot be empty';
    for (const text of value.split(',')) {
      const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
      if (!(port >= 1 && port <= 65535)) return `unable to parse "${value}" as a port`;
      ports.push(port);
    }
  }
  return ports;
}
