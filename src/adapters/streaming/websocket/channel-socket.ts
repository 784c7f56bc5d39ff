import type { RawData, WebSocket } from 'ws';

/** v5's signal that the client is done writing a channel: a binary message `[255, channel]`. */
export const CLOSE_SIGNAL = 255;

export interface ChannelSocketEvents {
  onData(channel: number, data: Buffer): void;
  /** v5 only: the client half-closed a channel. */
  onChannelClose(channel: number): void;
  onActivity(): void;
  /** The WebSocket closed, whoever closed it. Called once. */
  onClose(): void;
}

/**
 * Kubernetes' channel protocols over one WebSocket (wsstream, client-go's v5 client):
 * every message starts with its channel, one byte in the binary protocols
 * (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`), one ASCII digit before
 * base64 text in the base64 ones. Pings and pongs are not session bytes: client-go
 * pings every 5 s, and that must not keep an idle session open.
 */
export class ChannelSocket {
  readonly #ws: WebSocket;
  readonly #base64: boolean;
  readonly #closeSignal: boolean;
  readonly #events: ChannelSocketEvents;
  #closed = false;

  constructor(ws: WebSocket, protocol: string, events: ChannelSocketEvents) {
    this.#ws = ws;
    this.#base64 = protocol.includes('base64');
    this.#closeSignal = protocol.startsWith('v5.');
    this.#events = events;
    ws.on('message', (message: RawData) => this.#onMessage(toBuffer(message)));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      if (this.#closed) return;
      this.#closed = true;
      events.onClose();
    });
  }

  get open(): boolean {
    return !this.#closed && this.#ws.readyState === this.#ws.OPEN;
  }

  /** Sends on a channel; `done` runs once the bytes are written (or at once, if the socket is gone). */
  send(channel: number, data: Buffer, done: () => void = () => undefined): void {
    if (!this.open) return done();
    this.#events.onActivity();
    const message = this.#base64
      ? `${String.fromCharCode(48 + channel)}${data.toString('base64')}`
      : Buffer.concat([Buffer.from([channel]), data]);
    this.#ws.send(message, { binary: !this.#base64 }, () => done());
  }

  /** Stops reading until resume(): a reader is behind. */
  pause(): void {
    if (this.open) this.#ws.pause();
  }

  resume(): void {
    this.#ws.resume();
  }

  /** A normal closure (1000) after what is queued has gone out. */
  close(): void {
    // A paused socket would never read the client's answering close frame.
    this.#ws.resume();
    if (this.open) this.#ws.close(1000);
  }

  destroy(): void {
    this.#ws.terminate();
  }

  #onMessage(message: Buffer): void {
    if (message.length === 0) return;
    this.#events.onActivity();
    if (!this.#base64 && this.#closeSignal && message[0] === CLOSE_SIGNAL) {
      if (message.length >= 2) this.#events.onChannelClose(message[1]!);
      return;
    }
    if (this.#base64) {
      const channel = message[0]! - 48;
      this.#events.onData(channel, Buffer.from(message.subarray(1).toString('latin1'), 'base64'));
    } else {
      this.#events.onData(message[0]!, message.subarray(1));
    }
  }
}

function toBuffer(message: RawData): Buffer {
  if (Buffer.isBuffer(message)) return message;
  if (Array.isArray(message)) return Buffer.concat(message);
  return Buffer.from(message);
}
