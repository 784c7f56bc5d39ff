import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server as NetServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { InvalidArgumentError } from '../../domain/errors.js';
import { type CallObserver, callInterceptor } from './call-interceptor.js';
import { handOver } from './filtered-connection.js';

// The serve command loads this module lazily and takes the warm-up's activity count from it.
export { CallActivity } from './call-interceptor.js';

/** kubelet's CRI client uses 16 MiB both ways; so do we (ListContainers can be large). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** How long close() lets in-flight calls finish before it cuts them off. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** One gRPC service to serve. `drain` is called when closing begins (end live streams). */
export interface SocketService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
  drain?: () => void;
}

export interface SocketServerOptions {
  socketPath: string;
  services: readonly SocketService[];
  logger: Logger;
  /** Told of every call as it starts and ends (metrics, tracing). */
  observers?: readonly CallObserver[];
}

export interface SocketServer {
  readonly socketPath: string;
  /** Stops accepting calls, lets in-flight ones finish for up to `graceMs`, then cuts them off. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves `services` on a unix socket, readable and writable by the owner only.
 *
 * Invariant: the caller holds the ledger's LevelDB lock before calling. Only then is a
 * socket file already at `socketPath` known to be stale (left by a crashed instance of
 * this service) and safe to remove; a second instance fails on the lock first and never
 * gets here, so it cannot take the running instance's socket away.
 */
export async function startSocketServer(options: SocketServerOptions): Promise<SocketServer> {
  const socketPath = resolve(options.socketPath);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new InvalidArgumentError(
      'socket',
      `${socketPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit for a unix socket path`,
    );
  }
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await removeStaleSocket(socketPath);

  const server = new Server({
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    // Nothing serves channelz; it costs every call counters, timestamps and trace entries.
    'grpc.enable_channelz': 0,
    interceptors: [callInterceptor(options.logger, options.observers)],
  });
  for (const service of options.services) server.addService(service.definition, service.implementation);

  // The service accepts its connections itself and hands each to grpc-js through an
  // authority filter: Go clients send the socket path as :authority, which nghttp2 refuses
  // (see authority-filter.ts and docs/cri.md).
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  // allowHalfOpen: a client that half-closes still reads the server's answer (a GOAWAY,
  // say); the HTTP/2 session closes the socket when it is done.
  const connections = createServer({ allowHalfOpen: true }, (socket) =>
    handOver(socket, (c) => injector.injectConnection(c), options.logger),
  );
  // The umask closes the window between bind and chmod in which the socket would be
  // reachable with default permissions.
  const previousUmask = process.umask(0o177);
  try {
    await listen(connections, socketPath);
  } catch (cause) {
    server.forceShutdown();
    throw new InvalidArgumentError('socket', `cannot listen on ${socketPath}: ${(cause as Error).message}`, { cause });
  } finally {
    process.umask(previousUmask);
  }
  await chmod(socketPath, 0o600);
  // A failed accept (EMFILE, say) is worth a warning, not the process.
  connections.on('error', (error) =>
    options.logger.warn({ err: error }, 'accepting a connection on the socket failed'),
  );

  let closing: Promise<void> | undefined;
  return {
    socketPath,
    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closing ??= (async () => {
        for (const service of options.services) service.drain?.();
        connections.close();
        await new Promise<void>((done) => {
          const timer = setTimeout(() => {
            options.logger.warn({ graceMs }, 'calls still running after the grace period; cutting them off');
            server.forceShutdown();
            done();
          }, graceMs);
          server.tryShutdown(() => {
            clearTimeout(timer);
            done();
          });
        });
        // The listener normally unlinks its socket; make sure a later start finds none.
        await removeStaleSocket(socketPath).catch(() => undefined);
      })();
      return closing;
    },
  };
}

function listen(connections: NetServer, socketPath: string): Promise<void> {
  return new Promise((ok, fail) => {
    connections.once('error', fail);
    connections.listen(socketPath, () => {
      connections.off('error', fail);
      ok();
    });
  });
}

/** Removes a leftover socket file; refuses to touch anything that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stats.isSocket())
    throw new InvalidArgumentError('socket', `${path} exists and is not a socket; refusing to replace it`);
  await unlink(path);
}
