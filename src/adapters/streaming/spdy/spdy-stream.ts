import { Duplex } from 'node:stream';
import { headerValue, type SpdyHeaders } from './spdy-headers.js';

/** What a stream needs from its connection. */
export interface SpdyStreamHost {
  sendData(streamId: number, chunk: Buffer, fin: boolean, done: () => void): void;
  sendReset(streamId: number): void;
  /** The stream's reader is behind: stop reading the socket until it catches up. */
  pauseFor(stream: SpdyStream): void;
  /** The stream's reader wants more. */
  resumeFor(stream: SpdyStream): void;
  /** Both directions are over: the connection may forget the stream. */
  forget(stream: SpdyStream): void;
}

/** What a stream nobody reads yet may hold before the socket is paused anyway. */
const UNREAD_LIMIT_BYTES = 8 * 1024 * 1024;

/**
 * One SPDY stream a client opened, as a Duplex: reading gives the client's DATA, writing
 * sends DATA on the same stream id, end() sends an empty DATA frame with FIN (a half
 * close, as spdystream's Close does). Once the stream or the connection is reset,
 * writes are dropped quietly: the session's `closed` tells its handler why.
 */
export class SpdyStream extends Duplex {
  readonly id: number;
  readonly headers: SpdyHeaders;
  bytesIn = 0;
  bytesOut = 0;
  #host: SpdyStreamHost;
  #remoteDone = false;
  #localDone = false;
  #dead = false;
  #reading = false;

  constructor(host: SpdyStreamHost, id: number, headers: SpdyHeaders) {
    super({ allowHalfOpen: true });
    this.#host = host;
    this.id = id;
    this.headers = headers;
  }

  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  /**
   * From the connection: a DATA frame's payload. A reader that falls behind pauses the
   * socket, but only once someone reads the stream: a client writes stdin as soon as it
   * opened it, before it opened the others, and pausing then would keep their SYN_STREAMs
   * unread forever. Unread, a stream buffers up to UNREAD_LIMIT_BYTES.
   */
  receive(data: Buffer): void {
    if (this.#remoteDone) return;
    this.bytesIn += data.length;
    if (!this.push(data) && (this.#reading || this.readableLength > UNREAD_LIMIT_BYTES)) this.#host.pauseFor(this);
  }

  /**
   * From the connection: the client half-closed (FIN). Nothing more can come for this
   * stream, so it stops holding the socket: once ended, a Readable never asks for more
   * (_read), and a pause taken by the DATA frame that arrived with the FIN would stay
   * forever, stalling every stream on the connection.
   */
  receiveFin(): void {
    if (this.#remoteDone) return;
    this.#remoteDone = true;
    this.push(null);
    this.#host.resumeFor(this);
    this.#maybeForget();
  }

  /** From the connection: RST_STREAM, or the connection is gone. */
  kill(): void {
    this.#dead = true;
    this.#localDone = true;
    this.receiveFin();
    this.#host.resumeFor(this);
  }

  /** Ends both directions at once with RST_STREAM CANCEL (spdystream's Reset). */
  reset(): void {
    if (!this.#dead) this.#host.sendReset(this.id);
    this.kill();
  }

  override _read(): void {
    this.#reading = true;
    this.#host.resumeFor(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.#dead || this.#localDone) return done();
    this.bytesOut += chunk.length;
    this.#host.sendData(this.id, chunk, false, () => done());
  }

  override _final(done: (error?: Error | null) => void): void {
    if (this.#dead || this.#localDone) return done();
    this.#localDone = true;
    this.#host.sendData(this.id, Buffer.alloc(0), true, () => done());
    this.#maybeForget();
  }

  #maybeForget(): void {
    if (this.#remoteDone && this.#localDone) this.#host.forget(this);
  }
}
