import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { generateScenario, type ScenarioAppend } from './scenario.js';

/** The compiled CLI entry point (dist/src/cli/main.js), found from dist/test/support. */
export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** A CLI run that takes longer than this is killed and fails the test. */
export const DEFAULT_CLI_TIMEOUT_MS = 20_000;
export const DEFAULT_SERVE_READY_TIMEOUT_MS = 15_000;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// Every child this module started; killed on exit even when a test throws.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Environment for child CLIs: no CRI_LEDGER_* from the developer's shell leaks in. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CRI_LEDGER_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs `cri-ledger <args>` to completion (or the timeout, which kills it and rejects). */
export function runCli(
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    env: cleanEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timeoutMs = options.timeoutMs ?? DEFAULT_CLI_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `cri-ledger ${args.join(' ')} did not finish in ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A `cri-ledger serve` child process. */
export interface ServeProcess {
  child: ChildProcess;
  socket: string;
  /** Everything the service wrote to stderr so far (its pino log). */
  stderr(): string;
  /** Sends `signal` and waits for the exit (SIGKILL after the timeout). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `cri-ledger serve --root <root> --socket <socket> ...` and resolves once the
 * socket accepts connections (the service binds it last, after loading). Rejects if it exits first.
 */
export async function startServe(options: {
  /** Another build's dist/src/cli/main.js (benchmarks compare builds); this build's by default. */
  main?: string;
  root: string;
  socket: string;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /**
   * Keep the service's start-up warm-up (warmUpCalls). Tests turn it off unless they ask
   * (a second of CPU for each of the suite's many services); benchmarks keep it.
   */
  warmUp?: boolean;
}): Promise<ServeProcess> {
  const args = [
    'serve',
    '--root',
    options.root,
    '--state-dir',
    join(options.root, 'state'),
    '--socket',
    options.socket,
    '--log-level',
    'warn',
    '--node',
    'test-node',
    ...(options.args ?? []),
  ];
  // Node flags for the service (a bench's `--cpu-prof`), which NODE_OPTIONS refuses.
  const nodeArgs = process.env.CRI_LEDGER_SERVE_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, options.main ?? CLI_MAIN, ...args], {
    env: cleanEnv({ ...(options.warmUp ? {} : { CRI_LEDGER_WARM_UP_CALLS: '0' }), ...options.env }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let done: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      done = { code, signal };
      resolve(done);
    }),
  );
  const deadline = Date.now() + DEFAULT_SERVE_READY_TIMEOUT_MS;
  // A socket file alone is not enough: one left by a killed run exists before this
  // service takes it over, so wait until a connection is accepted.
  while (!(await accepts(options.socket))) {
    if (done) throw new Error(`serve exited (${done.code ?? done.signal}) before binding its socket:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not bind ${options.socket} in time:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    socket: options.socket,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
      if (!done) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Whether something listens on the unix socket at `path`. */
export function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A temp directory removed by the returned cleanup. */
export async function tempRoot(prefix = 'cri-ledger-cli-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Writes a generated node history into `dir` (a ledger directory) and closes it, so a
 * service or the CLI can open it. `stepMs` spaces the appends apart in time, so time
 * bounds and step durations have something to measure. `extra` appends follow the
 * generated history. Returns the stored events.
 */
export async function writeScenarioLog(
  dir: string,
  options: { pods: number; seed?: number; node?: string; stepMs?: number; extra?: readonly ScenarioAppend[] },
): Promise<LedgerEvent[]> {
  let clock = Date.parse('2026-11-28T10:00:00.000Z');
  const log = await LevelDbEventLog.open({
    dir,
    node: options.node ?? 'test-node',
    now: () => (clock += options.stepMs ?? 10),
  });
  const out: LedgerEvent[] = [];
  try {
    for (const append of [
      ...generateScenario({ pods: options.pods, seed: options.seed ?? 7 }),
      ...(options.extra ?? []),
    ]) {
      out.push(...(await log.append(append.stream, append.expected, append.events)));
    }
  } finally {
    await log.close();
  }
  return out;
}
