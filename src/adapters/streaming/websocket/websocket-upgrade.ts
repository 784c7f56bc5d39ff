import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import type { SessionKind } from '../contracts.js';
import { refuseUpgrade } from '../http-responses.js';
import { IdleTimer } from '../idle-timer.js';
import type { PortForwardSession } from '../port-forward-session.js';
import type { RemoteCommandSession } from '../remote-command-session.js';
import {
  type StreamingOptions,
  WEBSOCKET_PORT_FORWARD_PROTOCOLS,
  WEBSOCKET_REMOTE_COMMAND_PROTOCOLS,
} from '../streaming-options.js';
import { openWebSocketPortForward, portsFromQuery } from './port-forward-ws.js';
import { openWebSocketRemoteCommand } from './remote-command-ws.js';

export interface WebSocketUpgrade {
  readonly wss: WebSocketServer;
  readonly req: IncomingMessage;
  readonly socket: Socket;
  readonly head: Buffer;
  readonly kind: SessionKind;
  readonly query: URLSearchParams;
  readonly streams: () => StreamingOptions;
  readonly ports: () => readonly number[];
  readonly idleTimeoutMs: number;
  readonly start: (session: RemoteCommandSession | PortForwardSession, idle: IdleTimer, protocol: string) => void;
}

/**
 * Picks the subprotocol as kubelet's wsstream does (the client's first one the server
 * speaks; none offered means binary `channel.k8s.io`; none in common is refused), checks
 * a port forward's ports, then completes the WebSocket handshake and opens the session.
 */
export function acceptWebSocket(upgrade: WebSocketUpgrade): void {
  const { req, socket, kind } = upgrade;
  const supported: readonly string[] =
    kind === 'portforward' ? WEBSOCKET_PORT_FORWARD_PROTOCOLS : WEBSOCKET_REMOTE_COMMAND_PROTOCOLS;
  const offered = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  const protocol = offered.length === 0 ? '' : offered.find((p) => supported.includes(p));
  if (protocol === undefined) {
    return refuseUpgrade(
      socket,
      403,
      `requested protocol(s) are not supported: [${offered.join(' ')}]; supports [${supported.join(' ')}]`,
    );
  }
  let ports: readonly number[] = [];
  if (kind === 'portforward') {
    const fromQuery = portsFromQuery(upgrade.query.getAll('port'));
    if (typeof fromQuery === 'string') return refuseUpgrade(socket, 400, fromQuery);
    ports = fromQuery.length > 0 ? fromQuery : upgrade.ports();
    if (ports.length === 0) return refuseUpgrade(socket, 400, 'query parameter "port" is required');
  }
  const opened = (ws: WebSocket): void => {
    let idle: IdleTimer | undefined;
    const onActivity = (): void => idle?.touch();
    const session =
      kind === 'portforward'
        ? openWebSocketPortForward({ ws, protocol, ports, onActivity })
        : openWebSocketRemoteCommand({ ws, kind, protocol, options: upgrade.streams(), onActivity });
    idle = new IdleTimer(upgrade.idleTimeoutMs, () => session.end('idle-timeout'));
    upgrade.start(session, idle, protocol || 'channel.k8s.io');
  };
  // The protocol is chosen above; ws only writes it into the 101.
  selectedProtocol.set(req, protocol);
  upgrade.wss.handleUpgrade(req, socket, upgrade.head, opened);
}

const selectedProtocol = new WeakMap<IncomingMessage, string>();

/** For the WebSocketServer's `handleProtocols`: the protocol acceptWebSocket chose, or none. */
export function chosenProtocol(_offered: Set<string>, req: IncomingMessage): string | false {
  return selectedProtocol.get(req) || false;
}
