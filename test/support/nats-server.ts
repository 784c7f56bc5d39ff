import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private nats-server with JetStream on a free port, its store in a temp dir. */
export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** Stops the server for good and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** Graceful shutdown (SIGTERM) that keeps the store, for a later restart(). */
  down(): Promise<void>;
  /** SIGKILL, keeping the store: a crash, no goodbye to clients. */
  kill(): Promise<void>;
  /** Starts again on the same port and store (shutting down first if it runs). */
  restart(): Promise<void>;
}

export const DEFAULT_NATS_SERVER_START_TIMEOUT_MS = 10_000;

/*
 * Cleanup must happen even when the test process dies without running any handler (a
 * runner timeout SIGKILLs it). So each server gets a watchdog shell in its own process
 * group, reading a pipe from this process: when the pipe closes, because stop() ended
 * it or because this process is gone, the watchdog kills the server whose pid is in the
 * temp dir and removes the dir.
 */
const WATCHDOG = 'read _; [ -f "$1/server.pid" ] && kill -9 "$(cat "$1/server.pid")" 2>/dev/null; rm -rf "$1"';

/** The nats-server binary: on PATH, else Debian's /usr/sbin (not on a non-root PATH). */
export function natsServerBinary(): string {
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  if (which.status === 0 && found) return found;
  if (existsSync('/usr/sbin/nats-server')) return '/usr/sbin/nats-server';
  throw new Error('nats-server not found on PATH or at /usr/sbin/nats-server (apt-get install nats-server)');
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves when `proc` has exited (at once if it already has). */
export function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** Starts nats-server with `-js`; resolves once JetStream is up and the port accepts. */
export async function startNatsServer(): Promise<NatsServer> {
  const binary = natsServerBinary();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-nats-'));
  const storeDir = join(dir, 'store');
  const pidFile = join(dir, 'server.pid');
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  // Neither may keep the test process alive; the pipe closes when the process exits.
  watchdog.unref();
  (watchdog.stdin as Socket).unref();
  const watchdogDone = exited(watchdog);
  let proc: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    mkdirSync(storeDir, { recursive: true });
    const p = spawn(binary, ['-js', '-sd', storeDir, '-p', String(port), '-a', '127.0.0.1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc = p;
    if (p.pid !== undefined) writeFileSync(pidFile, String(p.pid));
    let output = '';
    let ready = false;
    p.stderr!.setEncoding('utf8');
    p.stderr!.on('data', (chunk: string) => {
      if (ready) return;
      output += chunk;
      // JetStream has recovered its streams by the time the server says it is ready.
      ready = output.includes('Server is ready');
    });
    const deadline = Date.now() + DEFAULT_NATS_SERVER_START_TIMEOUT_MS;
    while (!(ready && (await canConnect(port)))) {
      if (p.exitCode !== null) throw new Error(`nats-server exited with ${p.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`nats-server did not become ready on port ${port}:\n${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    if (!p) return;
    p.kill(signal);
    await exited(p);
    proc = undefined;
    // The watchdog must never kill a pid the system has since given to someone else.
    rmSync(pidFile, { force: true });
  };

  const stop = async (): Promise<void> => {
    await halt('SIGKILL');
    watchdog.ref();
    watchdog.stdin!.end();
    await watchdogDone;
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    down: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    restart: async () => {
      await halt('SIGTERM');
      await launch();
    },
  };
}
