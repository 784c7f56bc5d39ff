import type { Duplex, Readable, Writable } from 'node:stream';

/*
 * The seams of Exec, Attach and PortForward (issue 14), fixed first so the protocol
 * server, the containerd backends and the commands can be built side by side:
 *
 *   CRI Exec/Attach/PortForward -> commands validate -> StreamingServer.register() -> URL
 *   client connects to the URL -> protocol server (SPDY or WebSocket) negotiates the
 *   channels -> SessionHandlers.exec/attach/portForward(payload, streams)
 *   -> the handler records the start, runs a backend (containerd exec, the container's
 *   stdio, a connection in the pod's netns), bridges the bytes, records the end.
 */

export type SessionKind = 'exec' | 'attach' | 'portforward';

/** How a session ended, as recorded. */
export type SessionEnd =
  | 'exited' // exec: the process exited (exit code recorded); attach: the container exited
  | 'client-gone' // the client closed or dropped the connection
  | 'idle-timeout'
  | 'container-exited'
  | 'shutdown' // the service is stopping
  | 'service-restarted' // found open at startup
  | 'error';

/** What a remote command client opened, after protocol negotiation. */
export interface RemoteCommandStreams {
  /** The negotiated protocol, e.g. `v5.channel.k8s.io` (SPDY or WebSocket alike). */
  readonly protocol: string;
  readonly transport: 'spdy' | 'websocket';
  /** Ends when the client closes stdin (v5 close signal, a SPDY half-close, or the connection). */
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  /** Terminal size changes the client sends (the first one usually arrives at once). */
  onResize(listener: (size: { width: number; height: number }) => void): void;
  /**
   * Sends the outcome on the error stream as kubelet does (v4+: a Status JSON, Success, or
   * Failure with reason NonZeroExitCode and the code in details.causes[ExitCode]; older
   * protocols: the error text only) and closes every stream and the connection.
   */
  finish(result: { exitCode: number } | { error: string }): Promise<void>;
  /** Settles once, when the client goes away or the server ends the session. */
  readonly closed: Promise<SessionEnd>;
  /** Bytes received on stdin and sent on stdout+stderr so far. */
  bytes(): { in: number; out: number };
}

/** One port-forward connection; the client opens a data (and error) stream per request. */
export interface PortForwardStreams {
  readonly transport: 'spdy' | 'websocket';
  /** The negotiated protocol: `portforward.k8s.io` (SPDY), `v4.channel.k8s.io`, `v4.base64.channel.k8s.io` or `channel.k8s.io` (WebSocket). */
  readonly protocol: string;
  /** Called for each forwarding request: bridge `data` to the port; write a message to `error` on failure. */
  onRequest(listener: (request: { port: number; data: Duplex; error: Writable }) => void): void;
  readonly closed: Promise<SessionEnd>;
  bytes(): { in: number; out: number };
}

/** A remote command session whose client has connected and negotiated, and is opening its streams. */
export interface SessionOpening {
  readonly transport: 'spdy' | 'websocket';
  readonly protocol: string;
  /** Resolves once the streams are open (the handler is called next); rejects if they never will be. */
  readonly opened: Promise<void>;
}

/** What the protocol server calls once a client has used a token. `payload` is what register() was given. */
export interface SessionHandlers<P = unknown> {
  /**
   * Optional: called when an exec's client has connected, before its streams are open
   * (a SPDY client opens them one after another), so the handler can get ready meanwhile.
   * exec() follows once they are open, for the same payload.
   */
  execOpening?(payload: P, opening: SessionOpening): void;
  exec(payload: P, streams: RemoteCommandStreams): Promise<void>;
  attach(payload: P, streams: RemoteCommandStreams): Promise<void>;
  portForward(payload: P, streams: PortForwardStreams): Promise<void>;
}

/** The streaming server as the CRI handlers see it. */
export interface StreamingServer<P = unknown> {
  /** A single-use URL (128-bit random token, expiring unused after the token TTL) for a session. */
  register(kind: SessionKind, payload: P): string;
  /** Ends open sessions (reason `shutdown`) and stops listening. */
  close(): Promise<void>;
  readonly address: { host: string; port: number };
}
