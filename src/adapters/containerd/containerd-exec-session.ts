import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError } from '../../domain/errors.js';
import { closeWriter } from '../fs/fifo-ends.js';
import type { ContainerdApi } from './containerd-api.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';
import { signalNumber } from './containerd-tasks.js';
import { checkCmd, checkTerminalSize, ExecProcess, type ExecStdio, type ProcessSpecs } from './exec-process.js';

/*
 * An interactive exec (the backend of CRI Exec): the process runs with the stdio the
 * client asked for, each a FIFO (or, with a tty, a pty the shim makes, whose output comes
 * on the stdout FIFO); the caller bridges the Node streams to the client's.
 *
 *   startExecSession -> ExecProcess.launch -> [resize, stdin bytes, closeStdin, kill]
 *   -> wait(): exit code once the process exited and its output ended (or a drain timeout)
 *   -> cleanup(): SIGKILL if still running, DeleteProcess, close the FIFOs, remove the dir
 *
 * cleanup() is the caller's duty whatever happens (also when the client goes away); an
 * aborted `signal` does it too. Either way the process does not outlive the session.
 */

/** How long wait() waits, after the exit, for the output FIFOs to end before it answers. */
export const DEFAULT_EXEC_OUTPUT_DRAIN_MS = 2_000;

export interface ExecSessionRequest {
  /** argv; the container's env, cwd, user and security settings apply. */
  cmd: readonly string[];
  /** A pty for the process: output (stdout and stderr as one) on `stdout`; `stderr` must be false. */
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** Aborting it runs cleanup(): the process is killed and deleted. */
  signal?: AbortSignal;
  /** DEFAULT_EXEC_OUTPUT_DRAIN_MS. */
  outputDrainMs?: number;
  /** containerd's id for the process (a streaming session's id); random by default. */
  execId?: string;
  /**
   * The process is made while this settles, and started only once it has resolved; if it
   * rejects, nothing is started and the launch rejects with its reason. A streaming
   * session's start is recorded this way: in parallel, but before anything runs.
   */
  startAfter?: Promise<unknown>;
}

/** One running exec process and its stdio. Each method may be called after the exit. */
export interface ExecSession {
  readonly execId: string;
  /** Bytes for the process's stdin. Ending it (or piping a stream that ends into it) is closeStdin(). */
  readonly stdin?: Writable;
  /**
   * The process's output. It may have ended already (a process that exited at once with
   * nothing to say): pipe() and stream.finished() handle that; a bare 'end' listener does not.
   */
  readonly stdout?: Readable;
  readonly stderr?: Readable;
  /** The pty's size in characters; nothing without a tty. */
  resize(width: number, height: number): Promise<void>;
  /** The process reads end-of-file once what was written is read (tasks.CloseIO). Idempotent. */
  closeStdin(): Promise<void>;
  /** Signals the exec process (a number, `SIGTERM` or `TERM`). */
  kill(signal: number | string): Promise<void>;
  /** The exit code, once the process exited and its output ended or outputDrainMs passed. */
  wait(): Promise<{ exitCode: number }>;
  /** Kills the process if it still runs, deletes it from the shim, removes its FIFOs. Idempotent. */
  cleanup(): Promise<void>;
}

/**
 * Starts `request.cmd` in running container `containerId`. Rejects with
 * InvalidArgumentError, NotFoundError (no container), ContainerNotRunningError,
 * RuntimeUnavailableError or a ContainerdCallError (e.g. a binary that is not there),
 * having left nothing behind.
 */
export function startExecSession(
  o: { api: ContainerdApi; fifoDir: string; specs?: ProcessSpecs },
  containerId: string,
  request: ExecSessionRequest,
): Promise<ExecSession> {
  const { cmd, tty, stdin, stdout, stderr, signal } = request;
  try {
    checkCmd(cmd);
    if (tty && stderr) throw new InvalidArgumentError('stderr', 'a tty has one output stream: stderr must be false');
  } catch (error) {
    return Promise.reject(error);
  }
  const drainMs = request.outputDrainMs ?? DEFAULT_EXEC_OUTPUT_DRAIN_MS;
  const stdio = { tty, stdin, stdout, stderr };
  const launch = { ...o, containerId, cmd, stdio, ...(signal ? { signal } : {}) };
  const launched = ExecProcess.launch({
    ...launch,
    ...(request.execId ? { execId: request.execId } : {}),
    ...(request.startAfter ? { startAfter: request.startAfter } : {}),
  }).then((proc) => new ContainerdExecSession(proc, stdio, drainMs, signal));
  return unavailableAsRuntimeError(launched);
}

class ContainerdExecSession implements ExecSession {
  readonly execId: string;
  readonly stdin?: Socket;
  readonly stdout?: Socket;
  readonly stderr?: Socket;
  private readonly tty: boolean;
  private stdinClosed: Promise<void> | undefined;
  private waited: Promise<{ exitCode: number }> | undefined;
  private readonly onAbort = (): void => void this.cleanup().catch(() => undefined);

  constructor(
    private readonly proc: ExecProcess,
    stdio: ExecStdio,
    private readonly drainMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.execId = proc.execId;
    this.tty = stdio.tty;
    if (proc.stdin) this.stdin = proc.stdin;
    // An output nobody asked for is read and dropped, so the process never blocks on it.
    if (stdio.stdout) this.stdout = proc.stdout;
    else proc.stdout?.resume();
    if (stdio.stderr) this.stderr = proc.stderr;
    else proc.stderr?.resume();
    // Our stdin end is O_RDWR, so it never fails with EPIPE; the handler only keeps a
    // late error (after cleanup) from crashing the process.
    this.stdin?.on('error', () => undefined);
    this.stdin?.once('finish', () => void this.closeStdin().catch(() => undefined));
    if (signal?.aborted) this.onAbort();
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  async resize(width: number, height: number): Promise<void> {
    checkTerminalSize(width, height);
    if (this.tty) await unavailableAsRuntimeError(this.proc.resize(width, height));
  }

  closeStdin(): Promise<void> {
    const end = this.stdin;
    if (!end) return Promise.resolve();
    // Our end first, so nothing written is lost; then the shim's, which makes the EOF.
    this.stdinClosed ??= closeWriter(end).then(() => unavailableAsRuntimeError(this.proc.closeStdin()));
    return this.stdinClosed;
  }

  kill(signal: number | string): Promise<void> {
    return unavailableAsRuntimeError(this.proc.kill(signalNumber(signal)));
  }

  wait(): Promise<{ exitCode: number }> {
    this.waited ??= unavailableAsRuntimeError(
      this.proc.exited.then(async (exitCode) => {
        await this.outputEnded();
        return { exitCode };
      }),
    );
    return this.waited;
  }

  cleanup(): Promise<void> {
    this.signal?.removeEventListener('abort', this.onAbort);
    return unavailableAsRuntimeError(this.proc.cleanUp());
  }

  /** Resolves when every output FIFO has closed (ended and read, or destroyed), or after drainMs. */
  private async outputEnded(): Promise<void> {
    const open = [this.proc.stdout, this.proc.stderr].filter((s): s is Socket => s !== undefined && !s.closed);
    if (open.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const closed = Promise.all(open.map((s) => new Promise((resolve) => s.once('close', resolve))));
    const late = new Promise((resolve) => (timer = setTimeout(resolve, this.drainMs)));
    await Promise.race([closed, late]).finally(() => clearTimeout(timer));
  }
}
