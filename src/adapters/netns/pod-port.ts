import { Socket, type SocketConstructorOpts } from 'node:net';
import { CriLedgerError, InvalidArgumentError } from '../../domain/errors.js';
import { socketInNetns } from '../native/syscalls.js';

/*
 * PortForward's connector: a TCP connection to a port on the loopback of a pod's network
 * namespace, as containerd's CRI makes it (127.0.0.1 first, then ::1).
 *
 * The socket is made in the pod's namespace by the native module (setns, socket, setns
 * back, on the calling thread, in microseconds) and connected by Node like any other:
 * a non-blocking connect that libuv completes, so a port whose accept queue is full
 * waits here (up to the timeout) without blocking the event loop or a pool thread. A
 * blocking connect in C would hold the thread for as long as the SYN goes unanswered.
 */

/** How long a connect may wait for the pod's port (a full accept queue drops SYNs). */
export const DEFAULT_PORT_CONNECT_TIMEOUT_MS = 10_000;

/** Nothing accepted the connection on the pod's loopback; the message is for the request's error stream. */
export class PortForwardConnectError extends CriLedgerError {
  constructor(
    readonly port: number,
    /** The pod's netns file; undefined for a host-network pod. */
    readonly netnsPath: string | undefined,
    /** The errno name of the IPv4 attempt, e.g. `ECONNREFUSED`. */
    readonly code: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    const where = netnsPath ? `inside network namespace ${netnsPath}` : 'on the host (host network)';
    super(`failed to connect to localhost:${port} ${where}: ${detail}`, options);
  }
}

/**
 * A connected socket to `port` on the loopback of the pod's network namespace at
 * `netnsPath`, or of the host when it is undefined (a host-network pod). Rejects with
 * PortForwardConnectError when neither 127.0.0.1 nor ::1 accepts (refused, timed out).
 */
export async function connectToPodPort(
  netnsPath: string | undefined,
  port: number,
  o: { timeoutMs?: number } = {},
): Promise<Socket> {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new InvalidArgumentError('port', `must be 1 to 65535, got ${port}`);
  const timeoutMs = o.timeoutMs ?? DEFAULT_PORT_CONNECT_TIMEOUT_MS;
  const failures: Array<{ host: string; error: NodeJS.ErrnoException }> = [];
  for (const [host, family] of [
    ['127.0.0.1', 4],
    ['::1', 6],
  ] as const) {
    try {
      return await connectOnce(netnsPath, host, family, port, timeoutMs);
    } catch (error) {
      failures.push({ host, error: error as NodeJS.ErrnoException });
    }
  }
  const [v4, v6] = failures;
  const detail = `IPv4: ${v4?.error.message}; IPv6: ${v6?.error.message}`;
  throw new PortForwardConnectError(port, netnsPath, v4?.error.code ?? 'UNKNOWN', detail, { cause: v4?.error });
}

function connectOnce(
  netnsPath: string | undefined,
  host: string,
  family: 4 | 6,
  port: number,
  timeoutMs: number,
): Promise<Socket> {
  // manualStart: no read before the connect (on an unconnected socket it would fail at once).
  const socket = netnsPath
    ? new Socket({ fd: socketInNetns(netnsPath, family), manualStart: true } as SocketConstructorOpts)
    : new Socket();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const error: NodeJS.ErrnoException = new Error(`connect ETIMEDOUT ${host}:${port} after ${timeoutMs} ms`);
      error.code = 'ETIMEDOUT';
      socket.destroy(error);
    }, timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.connect({ host, port });
  });
}
