import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectContainerd } from '../../src/adapters/containerd/containerd-api.js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import {
  containerdConfig,
  DEFAULT_CONTAINERD_START_TIMEOUT_MS,
  DEFAULT_CONTAINERD_STOP_GRACE_MS,
  ensureContainerdInstalled,
  mountsUnder,
  type PrivateContainerd,
} from '../../test/support/containerd.js';

/*
 * A private containerd for benchmarks only: the same layout as test/support/containerd.ts
 * (own root, state dir and socket under one temp dir, the same cleanup guarantees), but
 * with containerd's built-in CRI plugin ENABLED, so one containerd serves both
 * containerd's CRI (namespace `k8s.io`, on containerd's own gRPC socket) and cri-ledger
 * (namespace `cri-ledger`). Tests never use this: there the CRI plugin stays disabled.
 */

/** containerd's CRI plugin serves its pods in this containerd namespace. */
export const CONTAINERD_CRI_NAMESPACE = 'k8s.io';
export const CRI_PLUGIN = 'io.containerd.grpc.v1.cri';

// Debian puts runc in /usr/sbin; containerd and its shims find runc through PATH.
const SBIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const BENCH_PATH = `${process.env['PATH'] ?? ''}:${SBIN_PATH}`;

/**
 * The test harness's configuration with the CRI plugin taken off the disabled list and
 * configured to stay inside `dir`: an empty CNI conf dir (host-network pods only),
 * overlayfs, and `restrict_oom_score_adj` because this machine lacks CAP_SYS_RESOURCE.
 */
export function containerdWithCriConfig(dir: string): string {
  const quote = (s: string): string => JSON.stringify(s);
  const base = containerdConfig(dir);
  const disabled = /^disabled_plugins = \[.*\]$/m;
  if (!disabled.test(base)) throw new Error('containerdConfig no longer has a one-line disabled_plugins: update bench/support/containerd-with-cri.ts');
  const withCri = base.replace(disabled, (line) =>
    line.replace(`${quote(CRI_PLUGIN)}, `, '').replace(`, ${quote(CRI_PLUGIN)}`, '').replace(quote(CRI_PLUGIN), ''),
  );
  if (withCri.includes(quote(CRI_PLUGIN))) throw new Error(`could not enable ${CRI_PLUGIN} in the test config`);
  return [
    withCri.trimEnd(),
    '',
    `[plugins.${quote(CRI_PLUGIN)}]`,
    '  sandbox_image = "registry.k8s.io/pause:3.6"',
    '  restrict_oom_score_adj = true',
    '  enable_selinux = false',
    `[plugins.${quote(CRI_PLUGIN)}.cni]`,
    `  bin_dir = ${quote(join(dir, 'cni', 'bin'))}`,
    `  conf_dir = ${quote(join(dir, 'cni', 'net.d'))}`,
    `[plugins.${quote(CRI_PLUGIN)}.containerd]`,
    '  snapshotter = "overlayfs"',
    '',
  ].join('\n');
}

/*
 * Cleanup must happen even if the bench process dies without running a handler. As in
 * the test harness, a watchdog shell in its own process group waits for a pipe from this
 * process to close, then kills containerd, the shims naming this socket after `-address`
 * and their children, removes the shims' sockets, unmounts what is left under the temp
 * dir (deepest first) and removes the dir.
 */
const WATCHDOG = [
  'read _',
  '[ -f "$1/containerd.pid" ] && kill -9 "$(cat "$1/containerd.pid")" 2>/dev/null',
  'for p in /proc/[0-9]*; do',
  '  args=$(tr "\\0" "\\n" < "$p/cmdline" 2>/dev/null)',
  '  [ "$(printf "%s\\n" "$args" | grep -A1 -x -- -address | tail -n 1)" = "$1/containerd.sock" ] || continue',
  '  kill -9 $(cat "$p"/task/*/children 2>/dev/null) "${p#/proc/}" 2>/dev/null',
  '  ns=$(printf "%s\\n" "$args" | grep -A1 -x -- -namespace | tail -n 1)',
  '  id=$(printf "%s\\n" "$args" | grep -A1 -x -- -id | tail -n 1)',
  '  rm -f "/run/containerd/s/$(printf %s "$1/containerd.sock/$ns/$id" | sha256sum | cut -d " " -f 1)"',
  'done',
  `awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done`,
  `awk -v d="$1/" 'index($5, d) == 1 { f = 1 } END { exit f }' /proc/self/mountinfo && rm -rf "$1"`,
].join('\n');

interface Shim {
  pid: number;
  socket: string | undefined;
}

/** Shims of the containerd at `address` (they carry `-address <address>`), in any namespace. */
function shimsOf(address: string): Shim[] {
  const shims: Shim[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
    if (flag('-address') !== address) continue;
    const [namespace, id] = [flag('-namespace'), flag('-id')];
    const hash = namespace && id ? createHash('sha256').update(join(address, namespace, id)).digest('hex') : undefined;
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

function logTail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Resolves once containerd answers Version and its CRI plugin is loaded (it fails open otherwise). */
async function waitForCri(address: string, proc: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + DEFAULT_CONTAINERD_START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`containerd exited (${proc.exitCode ?? proc.signalCode}) before serving:\n${logTail(logFile)}`);
    }
    if (Date.now() > deadline) throw new Error(`containerd did not answer Version on ${address}:\n${logTail(logFile)}`);
    if (existsSync(address)) {
      const api = connectContainerd({ address, namespace: 'default' });
      try {
        await unaryCall(api.version, 'Version', {}, { timeoutMs: 1_000 });
        break;
      } catch {
        // Not serving yet.
      } finally {
        api.close();
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  // containerd keeps serving when a plugin fails to load; a CRI that did not load would
  // make every containerd-CRI call UNIMPLEMENTED, so say why up front.
  const failed = /failed to load plugin io\.containerd\.grpc\.v1\.cri.*/.exec(readFileSync(logFile, 'utf8'));
  if (failed) throw new Error(`containerd's CRI plugin did not load: ${failed[0]}`);
}

/** Starts a private containerd with its CRI plugin enabled; resolves once it answers Version. */
export async function startContainerdWithCri(): Promise<PrivateContainerd> {
  const binary = ensureContainerdInstalled();
  const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-bench-containerd-'));
  const address = join(dir, 'containerd.sock');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const logFile = join(dir, 'containerd.log');
  const pidFile = join(dir, 'containerd.pid');
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.unref();
  (watchdog.stdin as Socket).unref();
  const watchdogDone = exited(watchdog);

  for (const d of [root, state, join(dir, 'cni', 'bin'), join(dir, 'cni', 'net.d')]) mkdirSync(d, { recursive: true });
  writeFileSync(join(dir, 'config.toml'), containerdWithCriConfig(dir));
  const log = openSync(logFile, 'a');
  const proc = spawn(binary, ['--config', join(dir, 'config.toml')], { stdio: ['ignore', log, log], env: { ...process.env, PATH: BENCH_PATH } });
  closeSync(log);
  if (proc.pid !== undefined) writeFileSync(pidFile, String(proc.pid));

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= shutdown());
  async function shutdown(): Promise<void> {
    proc.kill('SIGTERM');
    const escalate = setTimeout(() => proc.kill('SIGKILL'), DEFAULT_CONTAINERD_STOP_GRACE_MS);
    await exited(proc);
    clearTimeout(escalate);
    // The watchdog must never kill a pid the system has since given to someone else.
    rmSync(pidFile, { force: true });
    for (const shim of shimsOf(address)) {
      for (const child of childrenOf(shim.pid)) kill(child);
      kill(shim.pid);
      if (shim.socket) rmSync(shim.socket, { force: true });
    }
    // The CRI plugin's sandboxes leave /dev/shm tmpfs mounts under the state dir.
    for (const point of mountsUnder(dir)) spawnSync('umount', ['-l', point]);
    const left = mountsUnder(dir);
    watchdog.ref();
    watchdog.stdin!.end();
    await watchdogDone;
    if (left.length > 0) throw new Error(`mounts left under ${dir} after umount -l: ${left.join(', ')}`);
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    await waitForCri(address, proc, logFile);
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  return { address, root, state, logFile, stop };
}
