import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/*
 * Upgrade requests arrive as a bare socket (the server's 'upgrade' event), so their
 * answers are written as HTTP/1.1 text here: kubelet's 404 for a token it does not know,
 * its 400 and 403 for a failed handshake, and the 101 that switches to SPDY/3.1.
 */

/** Writes a plain-text error response on an upgrade socket and closes it. */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  body: string,
  headers: Record<string, string | readonly string[]> = {},
): void {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
  const text = `${body}\n`;
  const all: Record<string, string | readonly string[]> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': `${Buffer.byteLength(text)}`,
    Connection: 'close',
    ...headers,
  };
  for (const [name, value] of Object.entries(all)) {
    for (const v of typeof value === 'string' ? [value] : value) lines.push(`${name}: ${v}`);
  }
  socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
}

/** kubelet's answer to an unknown, used or expired token (Go's http.NotFound). */
export const NOT_FOUND_TEXT = '404 page not found';

/** The protocols a client offers in `X-Stream-Protocol-Version` (repeated or comma-separated), in its order. */
export function offeredProtocols(req: IncomingMessage): string[] {
  const raw = req.headersDistinct['x-stream-protocol-version'] ?? [];
  return raw
    .flatMap((value) => value.split(','))
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

export type Negotiation =
  | { ok: true; protocol: string }
  | { ok: false; status: number; message: string; headers: Record<string, string[]> };

/**
 * httpstream.Handshake: the first protocol the client offers that the server speaks; no
 * offer is a 400, no common protocol a 403 that lists what the server accepts.
 */
export function negotiate(req: IncomingMessage, server: readonly string[]): Negotiation {
  const offered = offeredProtocols(req);
  if (offered.length === 0)
    return { ok: false, status: 400, message: 'unable to upgrade: X-Stream-Protocol-Version is required', headers: {} };
  const protocol = offered.find((p) => server.includes(p));
  if (protocol) return { ok: true, protocol };
  return {
    ok: false,
    status: 403,
    message: `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server accepts [${server.join(' ')}]`,
    headers: { 'X-Accepted-Stream-Protocol-Versions': [...server] },
  };
}

/** Whether the request asks for SPDY/3.1 (`Connection: Upgrade`, `Upgrade: SPDY/3.1`). */
export function isSpdyUpgrade(req: IncomingMessage): boolean {
  const connection = (req.headers.connection ?? '').toLowerCase();
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  return connection.includes('upgrade') && upgrade.includes('spdy/3.1');
}

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

/** The 101 that hands the socket over to SPDY, naming the negotiated protocol. */
export function acceptSpdyUpgrade(socket: Duplex, protocol: string): void {
  socket.write(
    [
      'HTTP/1.1 101 Switching Protocols',
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      `X-Stream-Protocol-Version: ${protocol}`,
      `Date: ${new Date().toUTCString()}`,
      '',
      '',
    ].join('\r\n'),
  );
}
