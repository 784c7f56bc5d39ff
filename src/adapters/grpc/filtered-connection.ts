import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { AuthorityFilter, EMPTY_SETTINGS_FRAME } from './authority-filter.js';

/** Bytes read ahead of a first header block before the connection goes the filtered way regardless. */
export const MAX_PEEK_BYTES = 64 * 1024;

/**
 * Hands `socket` to the HTTP/2 server (`inject`) once its first request's headers are read.
 *
 * Clients send no request before the server's connection preface (a SETTINGS frame), and
 * the HTTP/2 server sends its own only once it has the connection. So the socket sends
 * an empty SETTINGS frame at once, and drops the client's acknowledgement of it.
 *
 * If the first request's authority is servable as sent (grpc-js; grpc-go since it sends
 * `localhost`), the socket itself is handed over with what was read put back, less that
 * acknowledgement: nghttp2 reads it natively and calls cost what they cost before. If the
 * authority had to be replaced (a socket path, a `unix:` URI, an empty one), the server
 * gets a stream that runs every later byte through the same filter. A client that
 * switches to an unservable authority later on a connection that began with a servable
 * one is not followed: nghttp2 resets those streams, as it did without the filter.
 */
export function handOver(socket: Socket, inject: (connection: Duplex) => void, logger: Logger): void {
  const filter = new AuthorityFilter(rewriteLogger(logger), true);
  const raw: Buffer[] = [];
  const filtered: Buffer[] = [];
  let rawBytes = 0;
  const onData = (chunk: Buffer): void => {
    raw.push(chunk);
    rawBytes += chunk.length;
    for (const piece of filter.push(chunk)) filtered.push(piece);
    const ackSeen = filter.settingsAckAt !== undefined;
    const decided =
      filter.firstBlock === 'given up' ||
      (filter.firstBlock !== 'pending' && ackSeen) ||
      filter.passedAnswerable ||
      rawBytes >= MAX_PEEK_BYTES;
    if (!decided) return;
    stopPeeking();
    // Handed over as it is when nothing needs the filter again: the block was servable
    // and the acknowledgement is gone, or the filter gave up (nghttp2 judges the bytes).
    if (filter.firstBlock === 'given up' || (filter.firstBlock === 'untouched' && ackSeen)) {
      socket.unshift(withoutSettingsAck(Buffer.concat(raw), filter.settingsAckAt));
      inject(socket);
    } else {
      inject(filteredConnection(socket, filter, filtered));
    }
  };
  // A client that half-closes before its first request still gets nghttp2's answer to what it sent.
  const onEarlyEnd = (): void => {
    stopPeeking();
    inject(filteredConnection(socket, filter, filtered, true));
  };
  const onEarlyError = (error: Error): void =>
    logger.debug({ err: error }, 'a connection failed before its first request');
  const stopPeeking = (): void => {
    socket.off('data', onData);
    socket.off('end', onEarlyEnd);
    socket.off('error', onEarlyError);
    socket.pause();
  };
  socket.on('data', onData);
  socket.once('end', onEarlyEnd);
  socket.on('error', onEarlyError);
  socket.write(EMPTY_SETTINGS_FRAME);
}

/** `bytes` less the 9-byte SETTINGS acknowledgement that starts at `at` (if any). */
function withoutSettingsAck(bytes: Buffer, at: number | undefined): Buffer {
  if (at === undefined || at < 0) return bytes;
  return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 9)]);
}

function rewriteLogger(logger: Logger): (authority: string) => void {
  const seen = new Set<string>();
  return (authority) => {
    if (seen.has(authority)) return;
    seen.add(authority);
    logger.debug({ authority }, 'client sent an authority nghttp2 refuses; serving it as localhost');
  };
}

/**
 * The connection the HTTP/2 server reads instead of `socket`: the client's bytes through
 * the filter (starting with `pending`, already filtered; `ended` if the client has
 * half-closed already), the server's bytes straight
 * back. Backpressure holds both ways: a server that reads slowly pauses the socket, a
 * client that reads slowly holds the server's writes.
 */
function filteredConnection(socket: Socket, filter: AuthorityFilter, pending: Buffer[], ended = false): Duplex {
  const connection = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, done) {
      if (socket.write(chunk)) done();
      else socket.once('drain', () => done());
    },
    final(done) {
      socket.end(done);
    },
    destroy(error, done) {
      socket.destroy();
      done(error);
    },
  });
  const forward = (pieces: Buffer[]): void => {
    let more = true;
    for (const piece of pieces) more = connection.push(piece) && more;
    if (!more) socket.pause();
  };
  forward(pending);
  if (ended) connection.push(null);
  socket.on('data', (chunk: Buffer) => forward(filter.push(chunk)));
  socket.on('end', () => connection.push(null));
  socket.on('error', (error) => connection.destroy(error));
  socket.on('close', () => connection.destroy());
  return connection;
}
