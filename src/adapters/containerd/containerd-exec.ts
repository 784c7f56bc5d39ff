import { randomBytes } from 'node:crypto';
import { constants as fsConstants, open } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { status as Status } from '@grpc/grpc-js';
import { CriLedgerError, ExecTimeoutError, InvalidArgumentError, NotFoundError } from '../../domain/errors.js';
import { mkfifo } from '../native/syscalls.js';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall } from './containerd-calls.js';
import { ignoreNotFound, unavailableAsRuntimeError } from './containerd-errors.js';
import { jsonAny, OCI_SPEC_TYPE_URL, parseJsonAny, type WireAny } from './containerd-wire.js';

/*
 * ExecSync: run a command in a running container and return what it wrote.
 *
 *   containers.Get (process spec) + tasks.Get (running?)
 *   -> mkdir <fifoDir>/<execId>, mkfifo stdout/stderr, open both for reading
 *   -> tasks.Exec -> tasks.Wait (pending) -> tasks.Start
 *   -> exit and EOF on both FIFOs, or the timeout: tasks.Kill(SIGKILL) and the exit
 *   -> always: tasks.DeleteProcess, close the readers, remove the FIFO dir
 *
 * The readers are open before Exec because the shim's open of the write side blocks
 * until a reader exists, and Start waits for that open.
 */

/** Output kept per stream unless the caller says otherwise; the rest is read and dropped. */
export const DEFAULT_EXEC_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
/** The deadline of each containerd call made to clean up after an exec. */
export const DEFAULT_EXEC_CLEANUP_TIMEOUT_MS = 10_000;
/** The Any type URL containerd registers for an OCI process spec (JSON). */
export const OCI_PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

const SIGKILL = osConstants.signals.SIGKILL;
const openFile = promisify(open);

// The timeout error is the domain's: ExecSync (src/commands) catches it without importing this adapter.
export { ExecTimeoutError };

/** The container exists but has no running task to exec in. Maps to FAILED_PRECONDITION. */
export class ContainerNotRunningError extends CriLedgerError {
  constructor(
    readonly containerId: string,
    /** What it is instead: `no task`, `created`, `stopped`, `paused`. */
    readonly state: string,
    options?: { cause?: unknown },
  ) {
    super(`container ${containerId} is not running (${state}), so nothing can be executed in it`, options);
  }
}

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

/** An OCI process spec; only the fields the exec replaces are named. */
type OciProcess = Record<string, unknown> & { args?: string[]; terminal?: boolean };

interface WireContainer {
  spec: WireAny | null;
}

/** What has happened to one exec so far, for the cleanup. */
interface ExecProgress {
  readonly containerId: string;
  readonly execId: string;
  readonly dir: string;
  readonly readers: FifoCapture[];
  created: boolean;
  /** Start was sent and no exit has been seen: the process may be running. */
  mayRun: boolean;
  readonly waitAbort: AbortController;
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
    if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((arg) => typeof arg === 'string')) {
      return Promise.reject(new InvalidArgumentError('cmd', 'must be a non-empty list of strings'));
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
    request.signal?.throwIfAborted();
    const processSpec = await this.execProcessSpec(containerId, request.cmd);
    const execId = `exec-${randomBytes(8).toString('hex')}`;
    const progress: ExecProgress = {
      containerId,
      execId,
      dir: join(this.fifoDir, execId),
      readers: [],
      created: false,
      mayRun: false,
      waitAbort: new AbortController(),
    };
    let result: Omit<ExecSyncResult, 'durationMs'>;
    try {
      result = await this.runExec(progress, processSpec, request);
    } catch (error) {
      await this.cleanUp(progress).catch(() => undefined);
      throw error;
    }
    // A process that cannot be deleted would stay in the shim: report it, not the output.
    await this.cleanUp(progress);
    return { ...result, durationMs: performance.now() - began };
  }

  private async runExec(
    progress: ExecProgress,
    processSpec: OciProcess,
    request: ExecSyncRequest,
  ): Promise<Omit<ExecSyncResult, 'durationMs'>> {
    const { containerId, execId, dir } = progress;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const [stdoutPath, stderrPath] = [join(dir, 'stdout'), join(dir, 'stderr')];
    mkfifo(stdoutPath, 0o600);
    mkfifo(stderrPath, 0o600);
    const stdout = await FifoCapture.open(stdoutPath, this.maxOutputBytes);
    progress.readers.push(stdout);
    const stderr = await FifoCapture.open(stderrPath, this.maxOutputBytes);
    progress.readers.push(stderr);

    request.signal?.throwIfAborted();
    const spec = jsonAny(OCI_PROCESS_TYPE_URL, processSpec);
    const execRequest = {
      container_id: containerId,
      exec_id: execId,
      stdin: '',
      stdout: stdoutPath,
      stderr: stderrPath,
      terminal: false,
      spec,
    };
    await unaryCall(this.api.tasks, 'Exec', execRequest).catch((error: unknown) => {
      // The task went away between the check and now.
      if (hasStatus(error, Status.NOT_FOUND))
        throw new ContainerNotRunningError(containerId, 'no task', { cause: error });
      throw error;
    });
    progress.created = true;
    // Asked before Start so the exit cannot be missed; the shim keeps an exec's exit
    // until DeleteProcess, so a Wait that reaches it late still answers.
    const exited = unaryCall<{ exit_status: number }>(
      this.api.tasks,
      'Wait',
      { container_id: containerId, exec_id: execId },
      { timeoutMs: Infinity, signal: progress.waitAbort.signal },
    );
    exited.catch(() => undefined);
    progress.mayRun = true;
    await unaryCall(this.api.tasks, 'Start', { container_id: containerId, exec_id: execId });

    const finished = Promise.all([exited, stdout.done, stderr.done]);
    const outcome = await settleFirst(finished, request.timeoutMs, request.signal);
    if (outcome === 'finished') {
      const [{ exit_status: exitCode }] = await finished;
      progress.mayRun = false;
      const [out, err] = [stdout.output(), stderr.output()];
      return {
        stdout: out.data,
        stderr: err.data,
        exitCode,
        stdoutTruncated: out.truncated,
        stderrTruncated: err.truncated,
        execId,
      };
    }
    // As containerd's CRI: SIGKILL the exec process (gone already is fine) and wait for it.
    // Its output is not waited for: a child it left may hold the pipes open.
    await ignoreNotFound(
      unaryCall(this.api.tasks, 'Kill', { container_id: containerId, exec_id: execId, signal: SIGKILL, all: false }),
    );
    await exited;
    progress.mayRun = false;
    if (outcome === 'timeout') throw new ExecTimeoutError(containerId, execId, request.cmd, request.timeoutMs);
    throw request.signal?.reason;
  }

  /** The container's process spec with `args` = cmd and no terminal, as containerd's CRI builds it. */
  private async execProcessSpec(containerId: string, cmd: readonly string[]): Promise<OciProcess> {
    // Both at once: one round trip. A missing container explains a missing task.
    const [record, task] = await Promise.allSettled([
      unaryCall<{ container: WireContainer }>(this.api.containers, 'Get', { id: containerId }),
      unaryCall<{ process: { status: string } }>(this.api.tasks, 'Get', { container_id: containerId, exec_id: '' }),
    ]);
    if (record.status === 'rejected') {
      if (hasStatus(record.reason, Status.NOT_FOUND)) throw new NotFoundError('container', containerId);
      throw record.reason;
    }
    if (task.status === 'rejected') {
      if (hasStatus(task.reason, Status.NOT_FOUND))
        throw new ContainerNotRunningError(containerId, 'no task', { cause: task.reason });
      throw task.reason;
    }
    const status = task.value.process.status;
    if (status !== 'RUNNING') throw new ContainerNotRunningError(containerId, status.toLowerCase());
    const any = record.value.container.spec;
    if (!any || any.type_url !== OCI_SPEC_TYPE_URL) {
      throw new CriLedgerError(
        `container ${containerId} has no OCI spec (type ${any?.type_url ?? 'none'}) to take the exec's process from`,
      );
    }
    const own = parseJsonAny<{ process?: OciProcess }>(any).process;
    if (!own) throw new CriLedgerError(`container ${containerId}'s OCI spec has no process to take the exec's from`);
    return { ...own, args: [...cmd], terminal: false };
  }

  /**
   * Leaves nothing behind: kills a process that may still run, deletes it from the shim,
   * closes the readers and removes the FIFO directory. The directory goes even when
   * containerd fails; the first containerd error is thrown after that.
   */
  private async cleanUp(progress: ExecProgress): Promise<void> {
    const { containerId, execId } = progress;
    const ids = { container_id: containerId, exec_id: execId };
    const options = { timeoutMs: DEFAULT_EXEC_CLEANUP_TIMEOUT_MS };
    const failures: unknown[] = [];
    if (progress.mayRun) {
      // NOT_FOUND: it has exited; FAILED_PRECONDITION: it never started (Start failed).
      const killed = await unaryCall(this.api.tasks, 'Kill', { ...ids, signal: SIGKILL, all: false }, options).then(
        () => true,
        (error: unknown) => {
          if (!hasStatus(error, Status.NOT_FOUND) && !hasStatus(error, Status.FAILED_PRECONDITION))
            failures.push(error);
          return false;
        },
      );
      // A fresh Wait with a deadline: the pending one has none and may have failed.
      if (killed)
        await ignoreNotFound(unaryCall(this.api.tasks, 'Wait', ids, options)).catch((error: unknown) =>
          failures.push(error),
        );
    }
    if (progress.created)
      await ignoreNotFound(unaryCall(this.api.tasks, 'DeleteProcess', ids, options)).catch((error: unknown) =>
        failures.push(error),
      );
    progress.waitAbort.abort();
    for (const reader of progress.readers) reader.close();
    await rm(progress.dir, { recursive: true, force: true });
    if (failures.length > 0) throw failures[0];
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
 * The read side of one output FIFO, keeping the first `maxBytes` and reading (and
 * dropping) the rest, so the writer never blocks on a full pipe and memory stays bounded.
 *
 * Opened O_RDONLY|O_NONBLOCK, which returns at once without a writer, and read through a
 * net.Socket on the fd: libuv polls it with epoll, which reports nothing until a writer
 * has come and gone, so the stream ends only when the shim closes its write side. (A
 * read(2) before any writer would return 0, which fs.createReadStream takes for the end;
 * a blocking open would hold a libuv thread until the shim opened the FIFO.)
 */
class FifoCapture {
  /** Resolves at end of file; rejects on a read error. */
  readonly done: Promise<void>;
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private truncated = false;

  private constructor(
    private readonly socket: Socket,
    private readonly maxBytes: number,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => this.take(chunk));
      socket.once('end', resolve);
      socket.once('error', reject);
    });
    this.done.catch(() => undefined);
  }

  static async open(path: string, maxBytes: number): Promise<FifoCapture> {
    const fd = await openFile(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    // The socket owns the fd from here and closes it when destroyed.
    return new FifoCapture(new Socket({ fd, readable: true, writable: false, allowHalfOpen: true }), maxBytes);
  }

  output(): { data: Buffer; truncated: boolean } {
    return { data: Buffer.concat(this.chunks, this.kept), truncated: this.truncated };
  }

  close(): void {
    this.socket.destroy();
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
