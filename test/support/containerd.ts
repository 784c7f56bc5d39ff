import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectContainerd } from '../../src/adapters/containerd/containerd-api.js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';

/** A private containerd: its own root, state dir and sockets, all under one temp dir. */
export interface PrivateContainerd {
  /** The gRPC socket path (pass to connectContainerd). */
  address: string;
  root: string;
  state: string;
  /** containerd's stdout and stderr. */
  logFile: string;
  /** Stops containerd, kills shims it left, unmounts, removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Stops containerd the way stop() does (SIGTERM, then SIGKILL after the grace period)
   * but leaves its shims, containers, mounts and files alone, runs `whileDown`, and starts
   * containerd again on the same config, root, state and socket. Resolves once it answers
   * Version; containerd reconnects to the shims that are still running.
   */
  restart(whileDown?: () => Promise<void> | void): Promise<void>;
}

export const DEFAULT_CONTAINERD_START_TIMEOUT_MS = 20_000;
export const DEFAULT_CONTAINERD_STOP_GRACE_MS = 5_000;

// Plugins that cannot work on the test machines or would reach outside the temp dir:
// the built-in CRI (cri-ledger is the CRI here) and snapshotters that need btrfs, zfs,
// a device-mapper pool or the aufs module (each would log a skip on every start).
export const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
];

// Debian puts runc in /usr/sbin, which a non-login PATH may lack; containerd and its shims
// find runc and the shim binary through PATH.
const SBIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const TEST_PATH = `${process.env['PATH'] ?? ''}:${SBIN_PATH}`;

/*
 * Cleanup must happen even when the test process dies without running any handler. A
 * watchdog shell in its own process group reads a pipe from this process; when the pipe
 * closes (stop() or this process gone) it kills containerd, every process whose command
 * line gives this containerd's socket as `-address` (its shims) and their children,
 * removes those shims' sockets, lazily unmounts whatever is left under the temp dir, deepest first, and removes the dir.
 */
const WATCHDOG = [
  'read _',
  '[ -f "$1/containerd.pid" ] && kill -9 "$(cat "$1/containerd.pid")" 2>/dev/null',
  'for p in /proc/[0-9]*; do',
  '  args=$(tr "\\0" "\\n" < "$p/cmdline" 2>/dev/null)',
  // Only shims: they name the socket right after `-address` (a client may name it too).
  '  [ "$(printf "%s\\n" "$args" | grep -A1 -x -- -address | tail -n 1)" = "$1/containerd.sock" ] || continue',
  // The shim's children (the containers' init processes) first, then the shim.
  '  kill -9 $(cat "$p"/task/*/children 2>/dev/null) "${p#/proc/}" 2>/dev/null',
  '  ns=$(printf "%s\\n" "$args" | grep -A1 -x -- -namespace | tail -n 1)',
  '  id=$(printf "%s\\n" "$args" | grep -A1 -x -- -id | tail -n 1)',
  '  rm -f "/run/containerd/s/$(printf %s "$1/containerd.sock/$ns/$id" | sha256sum | cut -d " " -f 1)"',
  'done',
  `awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done`,
  `awk -v d="$1/" 'index($5, d) == 1 { f = 1 } END { exit f }' /proc/self/mountinfo && rm -rf "$1"`,
].join('\n');

function findBinary(name: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], {
    encoding: 'utf8',
    env: { ...process.env, PATH: TEST_PATH },
  });
  return found.status === 0 ? found.stdout.trim() || undefined : undefined;
}

/**
 * The containerd binary, after checking that containerd, its runc shim and runc are
 * installed and that this process is root. Throws a message that says what to do.
 */
export function ensureContainerdInstalled(): string {
  const missing = ['containerd', 'containerd-shim-runc-v2', 'runc'].filter((name) => !findBinary(name));
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(', ')}: run the tests through scripts/test.sh, which installs the Debian ` +
        'packages in scripts/lib.sh, or run: apt-get install -y containerd runc busybox-static',
    );
  }
  if (process.getuid?.() !== 0) throw new Error('a private containerd needs root: run the integration tests as root');
  return findBinary('containerd')!;
}

/** containerd 1.6 configuration (format version 2) that keeps everything under `dir`. */
export function containerdConfig(dir: string): string {
  const quote = (s: string): string => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${quote(join(dir, 'root'))}`,
    `state = ${quote(join(dir, 'state'))}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(quote).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${quote(join(dir, 'containerd.sock'))}`,
    '[ttrpc]',
    `  address = ${quote(join(dir, 'containerd.sock.ttrpc'))}`,
    '[debug]',
    '  level = "info"',
    // The opt plugin would otherwise create /opt/containerd.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${quote(join(dir, 'opt'))}`,
    '',
  ].join('\n');
}

/** Mount points at or below `dir`, deepest first, from this process's mountinfo. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return (
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((point): point is string => point !== undefined)
      // mountinfo escapes space, tab, newline and backslash as octal.
      .map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
      .filter((point) => point === dir || point.startsWith(prefix))
      .sort((a, b) => b.length - a.length)
  );
}

interface Shim {
  pid: number;
  /** The shim's socket, which containerd 1.6 always puts in /run/containerd/s. */
  socket: string | undefined;
}

/** The shims serving the containerd at `address`: they carry `-address <address>`. */
function shimsOf(address: string): Shim[] {
  const shims: Shim[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // The process ended while we looked.
    }
    const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
    // A client of this containerd (cri-ledger under test) names the socket too; shims
    // name it right after `-address`.
    if (flag('-address') !== address) continue;
    const [namespace, id] = [flag('-namespace'), flag('-id')];
    // The shim names its socket after sha256(<containerd address>/<namespace>/<id>).
    const hash =
      namespace && id
        ? createHash('sha256')
            .update(join(address, namespace, id))
            .digest('hex')
        : undefined;
    shims.push({ pid: Number(entry), socket: hash && `/run/containerd/s/${hash}` });
  }
  return shims;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function logTail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Resolves once containerd at `address` answers Version. */
async function waitForVersion(address: string, proc: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + DEFAULT_CONTAINERD_START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`containerd exited (${proc.exitCode ?? proc.signalCode}) before serving:\n${logTail(logFile)}`);
    }
    if (Date.now() > deadline) throw new Error(`containerd did not answer Version on ${address}:\n${logTail(logFile)}`);
    // containerd creates the socket only once it serves; a fresh connection per attempt
    // avoids grpc-js's reconnect backoff.
    if (existsSync(address)) {
      const api = connectContainerd({ address, namespace: 'default' });
      try {
        await unaryCall(api.version, 'Version', {}, { timeoutMs: 1_000 });
        return;
      } catch {
        // Not serving yet.
      } finally {
        api.close();
      }
    }
    await delay(25);
  }
}

/** How a caller may vary the private containerd (the CRI benchmark enables the CRI plugin). */
export interface ContainerdVariant {
  /** The config.toml for a temp dir; defaults to containerdConfig (CRI plugin disabled). */
  config?: (dir: string) => string;
  /** Creates what the config points at inside the temp dir, before containerd starts. */
  prepare?: (dir: string) => void;
  /** Checks containerd's log once it answers Version; throws to fail the start. */
  verify?: (log: string) => void;
}

/** Starts a private containerd and resolves once it answers Version. */
export async function startContainerd(variant: ContainerdVariant = {}): Promise<PrivateContainerd> {
  const binary = ensureContainerdInstalled();
  const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-containerd-'));
  const address = join(dir, 'containerd.sock');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const logFile = join(dir, 'containerd.log');
  const pidFile = join(dir, 'containerd.pid');
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  // Neither may keep the test process alive; the pipe closes when the process exits.
  watchdog.unref();
  (watchdog.stdin as Socket).unref();
  const watchdogDone = exited(watchdog);

  mkdirSync(root);
  mkdirSync(state);
  variant.prepare?.(dir);
  writeFileSync(join(dir, 'config.toml'), (variant.config ?? containerdConfig)(dir));
  function spawnContainerd(): ChildProcess {
    // Appends, so a restarted containerd's log follows the first one's.
    const log = openSync(logFile, 'a');
    const child = spawn(binary, ['--config', join(dir, 'config.toml')], {
      stdio: ['ignore', log, log],
      env: { ...process.env, PATH: TEST_PATH },
    });
    closeSync(log);
    if (child.pid !== undefined) writeFileSync(pidFile, String(child.pid));
    return child;
  }
  let proc = spawnContainerd();

  async function stopContainerd(): Promise<void> {
    proc.kill('SIGTERM');
    const escalate = setTimeout(() => proc.kill('SIGKILL'), DEFAULT_CONTAINERD_STOP_GRACE_MS);
    await exited(proc);
    clearTimeout(escalate);
    // The watchdog must never kill a pid the system has since given to someone else.
    rmSync(pidFile, { force: true });
  }

  let stopped: Promise<void> | undefined;
  let restarting: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= shutdown());
  async function shutdown(): Promise<void> {
    await restarting?.catch(() => undefined);
    await stopContainerd();
    // Shims outlive containerd; their children are the containers' init processes.
    for (const shim of shimsOf(address)) {
      for (const child of childrenOf(shim.pid)) kill(child);
      kill(shim.pid);
      if (shim.socket) rmSync(shim.socket, { force: true });
    }
    for (const point of mountsUnder(dir)) spawnSync('umount', ['-l', point]);
    const left = mountsUnder(dir);
    watchdog.ref();
    watchdog.stdin!.end();
    await watchdogDone;
    // Never remove through a mount: that would delete what it shows.
    if (left.length > 0) throw new Error(`mounts left under ${dir} after umount -l: ${left.join(', ')}`);
    rmSync(dir, { recursive: true, force: true });
  }

  async function restart(whileDown?: () => Promise<void> | void): Promise<void> {
    if (stopped) throw new Error('restart: this containerd has been stopped');
    if (restarting) throw new Error('restart: a restart is already under way');
    const run = async (): Promise<void> => {
      await stopContainerd();
      await whileDown?.();
      proc = spawnContainerd();
      await waitForVersion(address, proc, logFile);
    };
    restarting = run();
    try {
      await restarting;
    } finally {
      restarting = undefined;
    }
  }

  try {
    await waitForVersion(address, proc, logFile);
    variant.verify?.(readFileSync(logFile, 'utf8'));
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  return { address, root, state, logFile, stop, restart };
}
