import WebSocket, { type RawData } from 'ws';

/*
 * A WebSocket streaming client on `ws`, speaking the channel protocols as client-go's v5
 * executor and kubelet's older WebSocket clients do: a channel byte (or ASCII digit and
 * base64 for the base64 protocols) before each message, v5's [255, channel] to close one.
 */

export interface WsSession {
  readonly ws: WebSocket;
  readonly protocol: string;
  /** Bytes received per channel, in order. */
  readonly channels: Map<number, Buffer[]>;
  send(channel: number, data: Buffer | string): void;
  /** v5: says the client is done writing `channel`. */
  closeChannel(channel: number): void;
  /** Resolves once the server closed the connection, with its close code. */
  readonly closed: Promise<number>;
  text(channel: number): string;
}

export function openWsSession(
  url: string,
  protocols: readonly string[],
  options: WebSocket.ClientOptions = {},
): Promise<WsSession> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), [...protocols], { perMessageDeflate: false, ...options });
  const channels = new Map<number, Buffer[]>();
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      const body: Buffer[] = [];
      res.on('data', (c: Buffer) => body.push(c));
      res.on('end', () => reject(new Error(`${res.statusCode}: ${Buffer.concat(body).toString().trim()}`)));
    });
    ws.once('error', reject);
    ws.once('open', () => {
      const base64 = ws.protocol.includes('base64');
      ws.on('message', (message: RawData) => {
        const data = Buffer.isBuffer(message) ? message : Buffer.from(message as ArrayBuffer);
        const channel = base64 ? data[0]! - 48 : data[0]!;
        const body = base64 ? Buffer.from(data.subarray(1).toString(), 'base64') : data.subarray(1);
        channels.set(channel, [...(channels.get(channel) ?? []), body]);
      });
      resolve({
        ws,
        protocol: ws.protocol,
        channels,
        send(channel, data) {
          const bytes = Buffer.from(data);
          if (base64) ws.send(`${String.fromCharCode(48 + channel)}${bytes.toString('base64')}`);
          else ws.send(Buffer.concat([Buffer.from([channel]), bytes]));
        },
        closeChannel(channel) {
          ws.send(Buffer.from([255, channel]));
        },
        closed,
        text: (channel) => Buffer.concat(channels.get(channel) ?? []).toString(),
      });
    });
  });
}
