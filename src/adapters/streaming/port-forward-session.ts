import type { Duplex, Writable } from 'node:stream';
import type { PortForwardStreams, SessionEnd } from './contracts.js';

export interface PortForwardRequest {
  port: number;
  data: Duplex;
  error: Writable;
}

/** What a port-forward session needs from its connection, SPDY or WebSocket. */
export interface PortForwardLink {
  readonly transport: 'spdy' | 'websocket';
  /** Closes the connection once what is written has gone out. */
  end(): void;
  /** Drops the connection at once. */
  destroy(): void;
  bytes(): { in: number; out: number };
}

/**
 * One port-forward connection as its handler sees it: requests (a data stream and an
 * error stream for one port) come as the client opens them, and are kept until a
 * listener is there. It ends once; the first reason is the one `closed` reports.
 */
export class PortForwardSession implements PortForwardStreams {
  readonly transport: 'spdy' | 'websocket';
  readonly protocol: string;
  readonly closed: Promise<SessionEnd>;
  #link: PortForwardLink | undefined;
  readonly #waiting: PortForwardRequest[] = [];
  readonly #listeners: Array<(request: PortForwardRequest) => void> = [];
  #ended = false;
  #settle!: (end: SessionEnd) => void;

  constructor(transport: 'spdy' | 'websocket', protocol: string) {
    this.transport = transport;
    this.protocol = protocol;
    this.closed = new Promise((resolve) => {
      this.#settle = resolve;
    });
  }

  /** Set once the connection exists (it is built after the session, so it can report to it). */
  attach(link: PortForwardLink): void {
    this.#link = link;
  }

  get ended(): boolean {
    return this.#ended;
  }

  onRequest(listener: (request: PortForwardRequest) => void): void {
    this.#listeners.push(listener);
    const waiting = this.#waiting.splice(0);
    for (const request of waiting) listener(request);
  }

  /** From the transport: a complete request. */
  request(request: PortForwardRequest): void {
    if (this.#ended) return;
    if (this.#listeners.length === 0) this.#waiting.push(request);
    for (const listener of this.#listeners) listener(request);
  }

  /** Ends the session: `exited` closes the connection in order, any other reason drops it. */
  end(reason: SessionEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#settle(reason);
    if (reason === 'exited') this.#link?.end();
    else this.#link?.destroy();
  }

  bytes(): { in: number; out: number } {
    return this.#link?.bytes() ?? { in: 0, out: 0 };
  }
}
