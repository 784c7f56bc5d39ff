import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { ExecTimeoutError, InvalidArgumentError } from '../../domain/errors.js';
import type { ContainerdApi } from './containerd-api.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';
import { type ExecSession, type ExecSessionRequest, startExecSession } from './containerd-exec-session.js';
import { checkCmd, ExecProcess, ProcessSpecs } from './exec-process.js';

export { ContainerNotRunningError, DEFAULT_EXEC_CLEANUP_TIMEOUT_MS, OCI_PROCESS_TYPE_URL } from './exec-process.js';

/*
 * ExecSync: run a command in a running container and return what it wrote.
 *
 *   ExecProcess.launch (spec, FIFOs for stdout and stderr, Exec, Wait, Start)
 *   -> exit and EOF on both FIFOs, or the timeout: tasks.Kill(SIGKILL) and the exit
 *   -> always: ExecProcess.cleanUp (DeleteProcess, close the readers, remove the FIFO dir)
 */

/** Output kept per stream unless the caller says otherwise; the rest is read and dropped. */
export const DEFAULT_EXEC_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

const SIGKILL = osConstants.signals.SIGKILL;

// The timeout error is the domain's: ExecSync (src/commands) catches it without importing this adapter.
export { ExecTimeoutError };

export interface ContainerdExecOptions {
  api: ContainerdApi;
  /** Where each exec gets a directory for its FIFOs, e.g. `<stateDir>/exec`; created on demand. */
  fifoDir: string;
  /** Bytes kept per stream (stdout and stderr each); DEFAULT_EXEC_MAX_OUTPUT_BYTES. */
  maxOutputBytes?: number;
}

export interface ExecSyncRequest {
  /** argv; the container's env, cwd, user and security settings apply. */
  cmd: readonly string[];
  /** Kills the process after this long from its start; 0 waits forever. */
  timeoutMs: number;
  /** Kills the process like the timeout does and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
  /** More than maxOutputBytes was written to the stream; `stdout` holds the first maxOutputBytes. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** From the call to the exit and the end of both streams. */
  durationMs: number;
  execId: string;
}

/**
 * Runs commands in running containers through containerd's tasks service, as containerd's
 * CRI ExecSync does: the container's own process spec with `args` replaced, stdout and
 * stderr through FIFOs, at most maxOutputBytes kept per stream. Whatever happens, the
 * exec process is deleted and its FIFO directory removed before the call settles.
 */
export class ContainerdExec {
  private readonly api: ContainerdApi;
  private readonly fifoDir: string;
  private readonly maxOutputBytes: number;
  /** The process specs of containers exec'd into, for every exec this backend starts. */
  private readonly specs = new ProcessSpecs();

  constructor(options: ContainerdExecOptions) {
    this.api = options.api;
    if (!options.fifoDir) throw new InvalidArgumentError('fifoDir', 'must not be empty');
    this.fifoDir = options.fifoDir;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_EXEC_MAX_OUTPUT_BYTES;
    if (!Number.isSafeInteger(this.maxOutputBytes) || this.maxOutputBytes <= 0) {
      throw new InvalidArgumentError('maxOutputBytes', `must be a positive integer, got ${options.maxOutputBytes}`);
    }
  }

  /**
   * Runs `cmd` in `containerId` to its end. Rejects with NotFoundError (no container),
   * ContainerNotRunningError, ExecTimeoutError, RuntimeUnavailableError, the signal's
   * reason, or a ContainerdCallError (e.g. Start failing for a binary that is not there).
   */
  execSync(containerId: string, request: ExecSyncRequest): Promise<ExecSyncResult> {
    const { cmd, timeoutMs } = request;
    try {
      checkCmd(cmd);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      return Promise.reject(
        new InvalidArgumentError('timeoutMs', `must be 0 (none) or a positive number, got ${timeoutMs}`),
      );
    }
    return unavailableAsRuntimeError(this.run(containerId, request));
  }

  private async run(containerId: string, request: ExecSyncRequest): Promise<ExecSyncResult> {
    const began = performance.now();
    const stdio = { stdin: false, stdout: true, stderr: true, tty: false };
    const { api, fifoDir, specs } = this;
    const { cmd, signal } = request;
    const proc = await ExecProcess.launch({
      api,
      fifoDir,
      specs,
      containerId,
      cmd,
      stdio,
      ...(signal ? { signal } : {}),
    });
    let result: Omit<ExecSyncResult, 'durationMs'>;
    try {
      result = await this.collect(proc, request);
    } catch (error) {
      await proc.cleanUp().catch(() => undefined);
      throw error;
    }
    // A process that cannot be deleted would stay in the shim: report it, not the output.
    await proc.cleanUp();
    return { ...result, durationMs: performance.now() - began };
  }

  private async collect(proc: ExecProcess, request: ExecSyncRequest): Promise<Omit<ExecSyncResult, 'durationMs'>> {
    const stdout = new FifoCapture(proc.stdout!, this.maxOutputBytes);
    const stderr = new FifoCapture(proc.stderr!, this.maxOutputBytes);
    const finished = Promise.all([proc.exited, stdout.done, stderr.done]);
    const outcome = await settleFirst(finished, request.timeoutMs, request.signal);
    if (outcome === 'finished') {
      const [exitCode] = await finished;
      const [out, err] = [stdout.output(), stderr.output()];
      return {
        stdout: out.data,
        stderr: err.data,
        exitCode,
        stdoutTruncated: out.truncated,
        stderrTruncated: err.truncated,
        execId: proc.execId,
      };
    }
    // As containerd's CRI: SIGKILL the exec process (gone already is fine) and wait for it.
    // Its output is not waited for: a child it left may hold the pipes open.
    await proc.kill(SIGKILL);
    await proc.exited;
    if (outcome === 'timeout')
      throw new ExecTimeoutError(proc.containerId, proc.execId, request.cmd, request.timeoutMs);
    throw request.signal?.reason;
  }

  /** An interactive exec (Exec's backend): see containerd-exec-session.ts. */
  startExecSession(containerId: string, request: ExecSessionRequest): Promise<ExecSession> {
    return startExecSession({ api: this.api, fifoDir: this.fifoDir, specs: this.specs }, containerId, request);
  }
}

/**
 * Resolves with what happened first: `finished` settling, the timeout (0: none), or the
 * abort. Rejects when `finished` rejects first.
 */
function settleFirst(
  finished: Promise<unknown>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<'finished' | 'timeout' | 'aborted'> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => settle(() => resolve('aborted'));
    const settle = (how: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      how();
    };
    if (signal?.aborted) return resolve('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs > 0) timer = setTimeout(() => settle(() => resolve('timeout')), timeoutMs);
    finished.then(
      () => settle(() => resolve('finished')),
      (error: unknown) => settle(() => reject(error)),
    );
  });
}

/**
 * What one output FIFO delivers, keeping the first `maxBytes` and reading (and dropping)
 * the rest, so the writer never blocks on a full pipe and memory stays bounded.
 */
class FifoCapture {
  /** Resolves at end of file; rejects on a read error. */
  readonly done: Promise<void>;
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private truncated = false;

  constructor(
    socket: Socket,
    private readonly maxBytes: number,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => this.take(chunk));
      // An empty FIFO whose writer came and went during the launch has ended already:
      // a socket emits 'end' on EOF with nothing buffered, listener or not.
      if (socket.readableEnded) return resolve();
      socket.once('end', resolve);
      socket.once('error', reject);
    });
    this.done.catch(() => undefined);
  }

  output(): { data: Buffer; truncated: boolean } {
    return { data: Buffer.concat(this.chunks, this.kept), truncated: this.truncated };
  }

  private take(chunk: Buffer): void {
    const room = this.maxBytes - this.kept;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.chunks.push(kept);
    this.kept += kept.length;
  }
}
