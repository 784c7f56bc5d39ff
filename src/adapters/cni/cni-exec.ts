/**
 * Running one CNI plugin binary, per the CNI spec's protocol: parameters in CNI_*
 * environment variables, the network config on stdin, the result (or a JSON error with
 * `code`, `msg`, `details`) on stdout, success as exit code 0.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { CniError, type CniCommand } from './cni-errors.js';

/** How long one plugin invocation may run before it is killed. */
export const DEFAULT_CNI_PLUGIN_TIMEOUT_MS = 30_000;

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** The CNI_* parameters of one invocation. */
export interface CniInvocation {
  command: CniCommand;
  containerId: string;
  /** Empty for a DEL whose netns is already gone (plugins then release what they can). */
  netns: string;
  ifName: string;
  args: string;
  /** Plugin search path, `:`-separated, passed on as CNI_PATH. */
  binDir: string;
  timeoutMs: number;
}

/** Finds plugin `type` in the `:`-separated `binDir`, as libcni does. */
export async function findPlugin(binDir: string, type: string, command: CniCommand): Promise<string> {
  for (const dir of binDir.split(':').filter(Boolean)) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this dir; try the next
    }
  }
  throw new CniError(type, command, `plugin binary "${type}" not found in ${binDir}`);
}

/** The environment of a plugin: ours (plugins need PATH for iptables etc.) less stray CNI_*. */
export function pluginEnv(inv: CniInvocation, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('CNI_')) env[k] = v;
  // portmap and firewall exec iptables by PATH lookup; Debian keeps it in /usr/sbin,
  // which a service manager's or a user's PATH may lack.
  const path = (env.PATH ?? '').split(':').filter(Boolean);
  for (const dir of SBIN_DIRS) if (!path.includes(dir)) path.push(dir);
  return {
    ...env,
    PATH: path.join(':'),
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netns,
    CNI_IFNAME: inv.ifName,
    CNI_ARGS: inv.args,
    CNI_PATH: inv.binDir,
  };
}

/** The message of a failed invocation, from the plugin's JSON error if it printed one. */
export function pluginFailure(
  stdout: string,
  stderr: string,
  exitCode: number | null,
): { detail: string; code?: number } {
  try {
    const error = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof error.msg === 'string') {
      const details = typeof error.details === 'string' && error.details !== '' ? `: ${error.details}` : '';
      return { detail: `${error.msg}${details}`, ...(typeof error.code === 'number' ? { code: error.code } : {}) };
    }
  } catch {
    // not JSON: fall back to stderr
  }
  const text = (stderr.trim() || stdout.trim()).slice(0, 2000);
  return { detail: text || `exited with code ${exitCode}` };
}

/**
 * Runs plugin `type` with `stdin` as its config; returns its parsed stdout (undefined
 * when it printed nothing, as DEL and CHECK may). Throws CniError on any failure.
 */
export async function execPlugin(type: string, inv: CniInvocation, stdin: unknown): Promise<unknown> {
  const path = await findPlugin(inv.binDir, type, inv.command);
  const { stdout, stderr, exitCode, timedOut, spawnError } = await new Promise<{
    stdout: string;
    stderr: string;
    exitCode: number | null;
    timedOut: boolean;
    spawnError?: Error;
  }>((resolve) => {
    const child = spawn(path, [], { env: pluginEnv(inv), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let spawnError: Error | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, inv.timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined); // a plugin that exits without reading stdin
    child.on('error', (e) => (spawnError = e));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: code,
        timedOut,
        ...(spawnError ? { spawnError } : {}),
      });
    });
    child.stdin.end(JSON.stringify(stdin));
  });
  if (spawnError)
    throw new CniError(type, inv.command, `cannot run ${path}: ${spawnError.message}`, undefined, {
      cause: spawnError,
    });
  if (timedOut) throw new CniError(type, inv.command, `timed out after ${inv.timeoutMs} ms and was killed`);
  if (exitCode !== 0) {
    const { detail, code } = pluginFailure(stdout, stderr, exitCode);
    throw new CniError(type, inv.command, detail, code);
  }
  if (stdout.trim() === '') return undefined;
  try {
    return JSON.parse(stdout);
  } catch (error) {
    throw new CniError(type, inv.command, `printed a result that is not JSON: ${stdout.slice(0, 200)}`, undefined, {
      cause: error,
    });
  }
}
