import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Logger } from '../logging/logger.js';
import type { SessionHandlers, SessionKind, StreamingServer } from './contracts.js';
import {
  acceptSpdyUpgrade,
  isSpdyUpgrade,
  isWebSocketUpgrade,
  NOT_FOUND_TEXT,
  negotiate,
  refuseUpgrade,
} from './http-responses.js';
import { IdleTimer } from './idle-timer.js';
import { SessionRunner } from './session-runner.js';
import { openSpdyPortForward } from './spdy/port-forward-spdy.js';
import { openSpdyRemoteCommand } from './spdy/remote-command-spdy.js';
import {
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_STREAM_CREATION_TIMEOUT_MS,
  SPDY_PORT_FORWARD_PROTOCOLS,
  SPDY_REMOTE_COMMAND_PROTOCOLS,
  type StreamingOptions,
} from './streaming-options.js';
import { TokenRegistry } from './token-registry.js';
import { acceptWebSocket, chosenProtocol } from './websocket/websocket-upgrade.js';

export interface StreamingServerOptions<P> {
  /** Where to listen: `127.0.0.1` by default (the `streaming.address` key). */
  readonly address: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly idleTimeoutMs: number;
  readonly tokenTtlMs: number;
  readonly handlers: SessionHandlers<P>;
  readonly logger: Logger;
  /** The streams an exec or attach payload asks for (the CRI request's stdin, stdout, stderr, tty, command). */
  readonly streamsOf: (payload: P) => StreamingOptions;
  /** The ports of a port-forward payload, for WebSocket clients whose URL names none. */
  readonly portsOf?: (payload: P) => readonly number[];
  readonly streamCreationTimeoutMs?: number;
  readonly shutdownGraceMs?: number;
}

const KINDS: readonly string[] = ['exec', 'attach', 'portforward'] satisfies SessionKind[];

/** Listens, then returns the server: its address is known, a port of 0 resolved. */
export async function startStreamingServer<P>(options: StreamingServerOptions<P>): Promise<StreamingServer<P>> {
  const server = new HttpStreamingServer(options);
  await server.listen();
  return server;
}

interface Claim<P> {
  readonly kind: SessionKind;
  readonly payload: P;
  readonly query: URLSearchParams;
}

class HttpStreamingServer<P> implements StreamingServer<P> {
  readonly #options: StreamingServerOptions<P>;
  readonly #http: Server;
  readonly #tokens: TokenRegistry<P>;
  readonly #runner: SessionRunner<P>;
  readonly #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: chosenProtocol,
  });
  /** Upgraded sockets: the HTTP server forgets them, so close() must end them itself. */
  readonly #sockets = new Set<Socket>();
  #address = { host: '', port: 0 };
  #closing: Promise<void> | undefined;

  constructor(options: StreamingServerOptions<P>) {
    this.#options = options;
    this.#tokens = new TokenRegistry(options.tokenTtlMs);
    this.#runner = new SessionRunner(options.handlers, options.logger);
    this.#http = options.tls
      ? createHttpsServer({
          cert: readTls(options.tls.certFile, 'certificate'),
          key: readTls(options.tls.keyFile, 'key'),
        })
      : createHttpServer();
    this.#http.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    // An upgrade's socket is the connection's own net.Socket (a TLSSocket with TLS).
    this.#http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket as Socket, head),
    );
  }

  get address(): { host: string; port: number } {
    return this.#address;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#options.port, this.#options.address, () => {
        this.#http.off('error', reject);
        const info = this.#http.address() as AddressInfo;
        this.#address = { host: this.#options.address, port: info.port };
        resolve();
      });
    });
  }

  register(kind: SessionKind, payload: P): string {
    if (this.#closing) throw new Error('the streaming server is closed');
    const token = this.#tokens.issue(kind, payload);
    const host = this.#address.host.includes(':') ? `[${this.#address.host}]` : this.#address.host;
    return `${this.#options.tls ? 'https' : 'http'}://${host}:${this.#address.port}/${kind}/${token}`;
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#tokens.clear();
    const stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#http.closeAllConnections();
    this.#runner.endAll('shutdown');
    for (const socket of this.#sockets) socket.destroy();
    await this.#runner.settle(this.#options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS);
    await stopped;
  }

  /** The token's payload, once; undefined for a path that is not `/<kind>/<token>` or a token that is not live. */
  #claim(req: IncomingMessage): Claim<P> | undefined {
    const url = new URL(req.url ?? '/', 'http://streaming');
    const [, kind, token, ...rest] = url.pathname.split('/');
    if (!kind || !token || rest.length > 0 || !KINDS.includes(kind)) return undefined;
    const payload = this.#tokens.take(kind, token);
    if (payload === undefined) return undefined;
    return { kind: kind as SessionKind, payload, query: url.searchParams };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const claim = this.#closing ? undefined : this.#claim(req);
    const [status, text] = claim
      ? [400, 'unable to upgrade: missing upgrade headers in request']
      : [404, NOT_FOUND_TEXT];
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
    res.end(`${text}\n`);
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const claim = this.#closing ? undefined : this.#claim(req);
    if (!claim) return refuseUpgrade(socket, 404, NOT_FOUND_TEXT);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (isWebSocketUpgrade(req)) return this.#webSocket(claim, req, socket, head);
    if (isSpdyUpgrade(req)) return this.#spdy(claim, req, socket, head);
    refuseUpgrade(socket, 400, 'unable to upgrade: missing upgrade headers in request');
  }

  #spdy(claim: Claim<P>, req: IncomingMessage, socket: Socket, head: Buffer): void {
    const portForward = claim.kind === 'portforward';
    const negotiation = negotiate(req, portForward ? SPDY_PORT_FORWARD_PROTOCOLS : SPDY_REMOTE_COMMAND_PROTOCOLS);
    if (!negotiation.ok) return refuseUpgrade(socket, negotiation.status, negotiation.message, negotiation.headers);
    const { protocol } = negotiation;
    acceptSpdyUpgrade(socket, protocol);
    let idle: IdleTimer | undefined;
    const onActivity = (): void => idle?.touch();
    const creationTimeoutMs = this.#options.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS;
    if (portForward) {
      const session = openSpdyPortForward({ socket, head, creationTimeoutMs, onActivity });
      idle = new IdleTimer(this.#options.idleTimeoutMs, () => session.end('idle-timeout'));
      this.#runner.run(claim.kind, claim.payload, session, idle, protocol);
      return;
    }
    const streams = this.#options.streamsOf(claim.payload);
    // The handler may get ready while the client opens its streams (one after another,
    // each after the previous one's reply): an exec's process is made meanwhile.
    let streamsOpen!: (open: boolean) => void;
    const opened = new Promise<void>((resolve, reject) => {
      streamsOpen = (open) => (open ? resolve() : reject(new Error('the client did not open its streams')));
    });
    opened.catch(() => undefined);
    this.#runner.opening(claim.kind, claim.payload, { transport: 'spdy', protocol, opened });
    openSpdyRemoteCommand({
      socket,
      head,
      kind: claim.kind,
      protocol,
      options: streams,
      creationTimeoutMs,
      onActivity,
    }).then(
      (session) => {
        streamsOpen(session !== undefined);
        if (!session)
          return this.#options.logger.warn(
            { session: claim.kind },
            'streaming client left or did not open its streams in time',
          );
        idle = new IdleTimer(this.#options.idleTimeoutMs, () => session.end('idle-timeout'));
        if (this.#closing) session.end('shutdown');
        this.#runner.run(claim.kind, claim.payload, session, idle, protocol);
      },
      (error: unknown) => {
        streamsOpen(false);
        this.#options.logger.warn({ err: error }, 'SPDY session failed to start');
      },
    );
  }

  #webSocket(claim: Claim<P>, req: IncomingMessage, socket: Socket, head: Buffer): void {
    acceptWebSocket({
      wss: this.#wss,
      req,
      socket,
      head,
      kind: claim.kind,
      query: claim.query,
      streams: () => this.#options.streamsOf(claim.payload),
      ports: () => this.#options.portsOf?.(claim.payload) ?? [],
      idleTimeoutMs: this.#options.idleTimeoutMs,
      start: (session, idle, protocol) => {
        if (this.#closing) session.end('shutdown');
        this.#runner.run(claim.kind, claim.payload, session, idle, protocol);
      },
    });
  }
}

function readTls(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new Error(`streaming TLS ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}
