import type { Readable, Writable } from 'node:stream';
import type { RemoteCommandStreams, SessionEnd, SessionKind } from './contracts.js';
import { errorStreamText, type SessionResult } from './exit-status.js';
import type { TerminalSize } from './resize-decoder.js';

/** What a remote command session needs from its connection, SPDY or WebSocket. */
export interface RemoteCommandLink {
  readonly transport: 'spdy' | 'websocket';
  /** Writes `statusText` (if any) on the error stream, half-closes every stream this side writes, and closes. */
  finish(statusText: string | undefined): Promise<void>;
  /** Drops the connection at once (shutdown, idle timeout, a client already gone). */
  destroy(): void;
  /** Bytes received on stdin and sent on stdout and stderr. */
  bytes(): { in: number; out: number };
}

export interface RemoteCommandInit {
  readonly kind: SessionKind;
  readonly protocol: string;
  readonly tty: boolean;
  readonly command?: readonly string[];
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly link: RemoteCommandLink;
}

/**
 * One exec or attach session as its handler sees it, whichever transport carries it.
 * It ends once: by finish() (`exited`), or by end() from the server or the connection
 * (`client-gone`, `idle-timeout`, `shutdown`, `error`); the first reason is the one
 * `closed` reports, and a finish() after that writes nothing.
 */
export class RemoteCommandSession implements RemoteCommandStreams {
  readonly protocol: string;
  readonly transport: 'spdy' | 'websocket';
  readonly tty: boolean;
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly closed: Promise<SessionEnd>;
  readonly #init: RemoteCommandInit;
  readonly #listeners: Array<(size: TerminalSize) => void> = [];
  #latestUnheard: TerminalSize | undefined;
  #ended = false;
  #settle!: (end: SessionEnd) => void;

  constructor(init: RemoteCommandInit) {
    this.#init = init;
    this.protocol = init.protocol;
    this.transport = init.link.transport;
    this.tty = init.tty;
    if (init.stdin) this.stdin = init.stdin;
    if (init.stdout) this.stdout = init.stdout;
    if (init.stderr) this.stderr = init.stderr;
    this.closed = new Promise((resolve) => {
      this.#settle = resolve;
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  onResize(listener: (size: TerminalSize) => void): void {
    this.#listeners.push(listener);
    const early = this.#latestUnheard;
    this.#latestUnheard = undefined;
    // A size that came before anyone listened is the terminal's current one: hand it over.
    if (early) queueMicrotask(() => listener(early));
  }

  /** From the transport: the client sent a terminal size. */
  resized(size: TerminalSize): void {
    if (this.#listeners.length === 0) this.#latestUnheard = size;
    for (const listener of this.#listeners) listener(size);
  }

  async finish(result: SessionResult): Promise<void> {
    if (this.#ended) return;
    this.#end('exited');
    const text = errorStreamText(this.protocol, this.#init.kind, result, this.#init.command);
    await this.#init.link.finish(text);
  }

  /** Ends the session without a status: the connection is dropped. */
  end(reason: SessionEnd): void {
    if (this.#ended) return;
    this.#end(reason);
    this.#init.link.destroy();
  }

  bytes(): { in: number; out: number } {
    return this.#init.link.bytes();
  }

  #end(reason: SessionEnd): void {
    this.#ended = true;
    this.#settle(reason);
  }
}
