import type { Socket } from 'node:net';
import {
  dataFrameHead,
  FrameReader,
  goAwayFrame,
  MAX_DATA_FRAME_BYTES,
  pingFrame,
  RST,
  rstStreamFrame,
  type SpdyFrame,
  SpdyProtocolError,
  synReplyFrame,
} from './spdy-frames.js';
import { HeaderBlockReader, HeaderBlockWriter, type SpdyHeaders } from './spdy-headers.js';
import { SpdyStream, type SpdyStreamHost } from './spdy-stream.js';

export interface SpdyConnectionEvents {
  /** Whether to take a stream the client opens (else RST_STREAM CANCEL, as kubelet's handlers refuse one). */
  accept(headers: SpdyHeaders): boolean;
  /** A taken stream, after its SYN_REPLY went out. */
  onStream(stream: SpdyStream): void;
  /** Bytes of a session moved, or a stream opened: the session is not idle. */
  onActivity(): void;
  /** The connection is gone (socket closed, GOAWAY or a protocol error). Called once. */
  onClose(error?: Error): void;
}

/** How long a half-closed connection waits for the client to close its side before it is dropped. */
const LINGER_MS = 5_000;

/**
 * The server side of an upgraded SPDY/3.1 connection: streams are opened by the client
 * (odd ids), answered with SYN_REPLY, and carried both ways. There is no flow control
 * beyond TCP's, as in spdystream, which Kubernetes' clients and kubelet both use: a
 * stream whose reader falls behind pauses the socket until it catches up.
 */
export class SpdyConnection implements SpdyStreamHost {
  readonly #socket: Socket;
  readonly #events: SpdyConnectionEvents;
  readonly #frames = new FrameReader();
  readonly #headerReader = new HeaderBlockReader();
  readonly #headerWriter = new HeaderBlockWriter();
  readonly #streams = new Map<number, SpdyStream>();
  readonly #pausedBy = new Set<SpdyStream>();
  #pending: SpdyFrame[] = [];
  #decoding = false;
  /** The last stream id answered with SYN_REPLY (see #replyEarly). */
  #lastRepliedId = 0;
  #drainWaiters: Array<() => void> = [];
  #lastStreamId = 0;
  #closed = false;
  #linger: NodeJS.Timeout | undefined;
  #closeError: Error | undefined;
  /** Writes are being gathered until the end of this tick (#write). */
  #corked = false;

  constructor(socket: Socket, head: Buffer, events: SpdyConnectionEvents) {
    this.#socket = socket;
    this.#events = events;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#flushWaiters());
    socket.on('error', () => socket.destroy());
    // The HTTP server's sockets allow half-open connections; a SPDY client that stops
    // sending has left (spdystream closes the whole connection at once).
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.#onSocketClose());
    if (head.length > 0) this.#onData(head);
  }

  /** Says GOAWAY, half-closes the socket once everything is written, and drops it if the client lingers. */
  end(): void {
    if (this.#closed || this.#linger) return;
    // Whatever the client still sends is dropped; a paused socket would not see it leave.
    this.#pausedBy.clear();
    this.#socket.resume();
    this.#write(goAwayFrame(this.#lastStreamId));
    this.#socket.end();
    this.#linger = setTimeout(() => this.#socket.destroy(), LINGER_MS);
    this.#linger.unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  sendData(streamId: number, chunk: Buffer, fin: boolean, done: () => void): void {
    if (this.#closed) return done();
    this.#events.onActivity();
    let ok = true;
    let offset = 0;
    // Each frame's head and payload leave in one writev (#write corks): no copy of the payload.
    do {
      const piece = chunk.subarray(offset, offset + MAX_DATA_FRAME_BYTES);
      offset += piece.length;
      const last = offset >= chunk.length;
      ok = this.#write(dataFrameHead(streamId, piece.length, fin && last));
      if (piece.length > 0) ok = this.#write(piece);
    } while (offset < chunk.length);
    if (ok) done();
    else this.#drainWaiters.push(done);
  }

  sendReset(streamId: number): void {
    if (!this.#closed) this.#write(rstStreamFrame(streamId, RST.cancel));
  }

  /**
   * Frames written in one turn of the event loop leave in one writev, when the turn's
   * synchronous work is done (before any I/O): a session's end (its status, a FIN on
   * each stream, GOAWAY) is one segment on the wire, not five, for us and the client.
   */
  #write(bytes: Buffer): boolean {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    return this.#socket.write(bytes);
  }

  pauseFor(stream: SpdyStream): void {
    this.#pausedBy.add(stream);
    this.#socket.pause();
  }

  resumeFor(stream: SpdyStream): void {
    if (this.#pausedBy.delete(stream) && this.#pausedBy.size === 0 && !this.#closed) this.#socket.resume();
  }

  forget(stream: SpdyStream): void {
    this.#streams.delete(stream.id);
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      for (const frame of this.#frames.push(chunk)) {
        if (frame.type === 'syn-stream') this.#replyEarly(frame.streamId);
        this.#pending.push(frame);
      }
      this.#process();
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  /**
   * A client opens a session's streams one at a time, each after the reply to the one
   * before (client-go's CreateStream waits for SYN_REPLY), so the reply goes out as the
   * SYN_STREAM arrives, before its header block is inflated off the event loop: the
   * inflates overlap the client's next stream instead of adding up in series. A stream
   * whose headers then turn out unwanted is reset. An id out of order gets no reply
   * here, and a protocol-error reset when its turn comes.
   */
  #replyEarly(streamId: number): void {
    if (streamId % 2 === 0 || streamId <= this.#lastRepliedId || this.#closed) return;
    this.#lastRepliedId = streamId;
    this.#write(synReplyFrame(streamId, this.#headerWriter.encode()));
  }

  /** Frames are handled in order; a SYN_STREAM's header block is inflated first, asynchronously. */
  #process(): void {
    while (!this.#decoding && !this.#closed) {
      const frame = this.#pending.shift();
      if (!frame) return;
      if (frame.type !== 'syn-stream') {
        this.#handle(frame);
        continue;
      }
      this.#decoding = true;
      this.#headerReader.decode(frame.headerBlock).then(
        (headers) => {
          this.#decoding = false;
          this.#open(frame.streamId, frame.fin, headers);
          this.#process();
        },
        (error: unknown) => this.#fail(error as Error),
      );
    }
  }

  #open(streamId: number, fin: boolean, headers: SpdyHeaders): void {
    if (this.#closed) return;
    if (streamId % 2 === 0 || streamId <= this.#lastStreamId) {
      this.#write(rstStreamFrame(streamId, RST.protocolError));
      return;
    }
    this.#lastStreamId = streamId;
    this.#events.onActivity();
    if (!this.#events.accept(headers)) {
      this.#write(rstStreamFrame(streamId, RST.cancel));
      return;
    }
    const stream = new SpdyStream(this, streamId, headers);
    this.#streams.set(streamId, stream);
    if (fin) stream.receiveFin();
    this.#events.onStream(stream);
  }

  #handle(frame: Exclude<SpdyFrame, { type: 'syn-stream' }>): void {
    switch (frame.type) {
      case 'data': {
        const stream = this.#streams.get(frame.streamId);
        if (!stream) return;
        this.#events.onActivity();
        if (frame.data.length > 0) stream.receive(frame.data);
        if (frame.fin) stream.receiveFin();
        return;
      }
      case 'rst-stream':
        this.#streams.get(frame.streamId)?.kill();
        this.#streams.delete(frame.streamId);
        return;
      case 'ping':
        this.#write(pingFrame(frame.id));
        return;
      case 'goaway':
        // The client is leaving: nothing it opened will be read any more.
        this.#socket.destroy();
        return;
      case 'ignored':
        return;
    }
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#closeError = error instanceof SpdyProtocolError ? error : new SpdyProtocolError(error.message);
    this.#write(goAwayFrame(this.#lastStreamId));
    // What this turn gathered goes before the socket does.
    this.#socket.uncork();
    this.#socket.destroy();
  }

  #flushWaiters(): void {
    // Bytes went out: a session waiting on a slow reader is not idle.
    this.#events.onActivity();
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const done of waiters) done();
  }

  #onSocketClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    for (const stream of this.#streams.values()) stream.kill();
    this.#streams.clear();
    this.#pausedBy.clear();
    this.#pending = [];
    this.#headerReader.close();
    this.#flushWaiters();
    this.#events.onClose(this.#closeError);
  }
}
