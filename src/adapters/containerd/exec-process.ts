import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { CriLedgerError, InvalidArgumentError, NotFoundError } from '../../domain/errors.js';
import { openFifoReader, openFifoWriter } from '../fs/fifo-ends.js';
import { mkfifo } from '../native/syscalls.js';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall } from './containerd-calls.js';
import { ignoreNotFound } from './containerd-errors.js';
import { jsonAny, OCI_SPEC_TYPE_URL, parseJsonAny, type WireAny } from './containerd-wire.js';

/** The deadline of each containerd call made to clean up after an exec. */
export const DEFAULT_EXEC_CLEANUP_TIMEOUT_MS = 10_000;
/** The Any type URL containerd registers for an OCI process spec (JSON). */
export const OCI_PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

const SIGKILL = osConstants.signals.SIGKILL;

/** The container has no running task to exec in or attach to. Maps to FAILED_PRECONDITION. */
export class ContainerNotRunningError extends CriLedgerError {
  constructor(
    readonly containerId: string,
    /** What it is instead: `no task`, `created`, `stopped`, `paused`. */
    readonly state: string,
    options?: { cause?: unknown },
  ) {
    super(`container ${containerId} is not running (${state})`, options);
  }
}

/** Rejects an argv that is not a non-empty list of strings. */
export function checkCmd(cmd: readonly string[]): void {
  if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((arg) => typeof arg === 'string'))
    throw new InvalidArgumentError('cmd', 'must be a non-empty list of strings');
}

/** Rejects a terminal size that tasks.ResizePty cannot carry (uint32, and a pty's are 16-bit). */
export function checkTerminalSize(width: number, height: number): void {
  const valid = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff;
  if (!valid(width) || !valid(height))
    throw new InvalidArgumentError('size', `bad terminal size ${width}x${height}: each must be 0 to 65535`);
}

/** Which stdio an exec process gets. With `tty` the shim makes a pty: output comes on stdout, and there is no stderr. */
export interface ExecStdio {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** An OCI process spec; only the fields the exec replaces are named. */
type OciProcess = Record<string, unknown> & { args?: string[]; terminal?: boolean; env?: string[] };

/** Containers whose process spec a ProcessSpecs keeps; past it the oldest is forgotten. */
export const MAX_CACHED_PROCESS_SPECS = 4_096;

/**
 * The process spec of each container an exec went into, as containerd holds it. A
 * container's spec is fixed at creation (UpdateContainerResources changes its resources,
 * never its process) and its id is never reused, so the first exec reads it with
 * containers.Get and later ones (kubelet's exec probes, every few seconds) do not: that
 * call and the decoding of the whole OCI spec were a third of an exec's start.
 */
export class ProcessSpecs {
  private readonly specs = new Map<string, OciProcess>();

  async of(api: ContainerdApi, containerId: string): Promise<OciProcess> {
    const known = this.specs.get(containerId);
    if (known) return known;
    const own = await containerProcess(api, containerId);
    if (this.specs.size >= MAX_CACHED_PROCESS_SPECS) this.specs.delete(this.specs.keys().next().value!);
    this.specs.set(containerId, own);
    return own;
  }
}

export interface LaunchOptions {
  api: ContainerdApi;
  /** Where the container's process spec comes from; a fresh one (read each time) unless given. */
  specs?: ProcessSpecs;
  /** The parent of the exec's own FIFO directory. */
  fifoDir: string;
  containerId: string;
  cmd: readonly string[];
  stdio: ExecStdio;
  /** Checked before tasks.Exec: an abort then creates nothing in the shim. */
  signal?: AbortSignal;
  /** The exec id to give containerd (a session's id, so recovery can find it); a random one by default. */
  execId?: string;
  /** Awaited before tasks.Start (ExecSessionRequest.startAfter). */
  startAfter?: Promise<unknown>;
}

/**
 * One exec process in a container's shim, and our ends of its stdio FIFOs, from launch
 * to deletion (ExecSync and interactive exec sessions alike):
 *
 *   process spec (containers.Get, once per container: ProcessSpecs), while
 *     mkdir <fifoDir>/<execId>, mkfifo, open our ends -> tasks.Exec
 *   -> tasks.Wait (pending, so the exit cannot be missed)
 *   -> startAfter settled -> tasks.Start
 *   (a failed step asks tasks.Get whether the task runs: ContainerNotRunningError if not)
 *   -> cleanUp: SIGKILL if it may still run, DeleteProcess, close our ends, remove the dir
 *
 * Our ends are open before Exec because the shim's open of an output FIFO's write side
 * blocks until a reader exists, and Start waits for that open.
 */
export class ExecProcess {
  /** Our write side of its stdin (O_RDWR: opened before the shim's reader exists), when asked for. */
  stdin: Socket | undefined;
  /** Always there: the shim needs it. */
  stdout: Socket | undefined;
  /** There unless the process has a tty. */
  stderr: Socket | undefined;
  /** Resolves with the exit status once the process has exited; rejects if Wait fails. */
  readonly exited: Promise<number>;
  private resolveExit!: (wait: Promise<{ exit_status: number }>) => void;
  private created = false;
  /** Start was sent and no exit has been seen: the process may be running. */
  private mayRun = false;
  private readonly waitAbort = new AbortController();
  private cleaning: Promise<void> | undefined;

  private constructor(
    private readonly api: ContainerdApi,
    readonly containerId: string,
    readonly execId: string,
    readonly dir: string,
  ) {
    this.exited = new Promise<{ exit_status: number }>((resolve) => (this.resolveExit = resolve)).then((response) => {
      this.mayRun = false;
      return response.exit_status;
    });
    this.exited.catch(() => undefined);
  }

  /**
   * Creates and starts the process; on any failure removes what it made and rethrows
   * (NotFoundError, ContainerNotRunningError, the signal's reason, a ContainerdCallError).
   */
  static async launch(o: LaunchOptions): Promise<ExecProcess> {
    o.signal?.throwIfAborted();
    const execId = o.execId ?? `exec-${randomBytes(8).toString('hex')}`;
    const proc = new ExecProcess(o.api, o.containerId, execId, join(o.fifoDir, execId));
    try {
      await proc.createAndStart(
        (o.specs ?? new ProcessSpecs())
          .of(o.api, o.containerId)
          .then((own) => execProcessSpec(own, o.cmd, o.stdio.tty)),
        o.stdio,
        o.signal,
        o.startAfter,
      );
    } catch (error) {
      await proc.cleanUp().catch(() => undefined);
      throw error;
    }
    return proc;
  }

  /** Sends `signal` to the process; one that has exited or was deleted is fine. */
  async kill(signal: number): Promise<void> {
    const request = { container_id: this.containerId, exec_id: this.execId, signal, all: false };
    await ignoreNotFound(unaryCall(this.api.tasks, 'Kill', request));
  }

  /** tasks.ResizePty: the pty's size in characters (only a tty process has one). */
  async resize(width: number, height: number): Promise<void> {
    const request = { container_id: this.containerId, exec_id: this.execId, width, height };
    await ignoreNotFound(unaryCall(this.api.tasks, 'ResizePty', request));
  }

  /** tasks.CloseIO(stdin): the shim closes its own write side, so the process reads EOF once ours is closed too. */
  async closeStdin(): Promise<void> {
    const request = { container_id: this.containerId, exec_id: this.execId, stdin: true };
    await ignoreNotFound(unaryCall(this.api.tasks, 'CloseIO', request));
  }

  /**
   * Leaves nothing behind: kills a process that may still run, deletes it from the shim,
   * closes our FIFO ends and removes the FIFO directory. The directory goes even when
   * containerd fails; the first containerd error is thrown after that. Idempotent.
   */
  cleanUp(): Promise<void> {
    this.cleaning ??= this.removeAll();
    return this.cleaning;
  }

  private async createAndStart(
    specFetch: Promise<OciProcess>,
    stdio: ExecStdio,
    signal: AbortSignal | undefined,
    startAfter: Promise<unknown> | undefined,
  ): Promise<void> {
    const path = (name: string): string => join(this.dir, name);
    // The shim (containerd 1.6) opens both output paths of a process without a tty, even
    // one nobody asked for, as containerd's CRI makes them: the caller drains what it did
    // not ask for. With a tty there is only stdout.
    const wanted = (['stdin', 'stdout', 'stderr'] as const).filter((name) =>
      name === 'stdin' ? stdio.stdin : !(stdio.tty && name === 'stderr'),
    );
    // The FIFOs are made while containerd answers for the spec; both are done (or
    // failed) before going on, so a cleanup never races an open still in flight.
    // The task's state is not asked first: the caller saw the container running, and a
    // task that is not fails tasks.Exec or tasks.Start, whose error is then explained by
    // the task's state (notRunningOr).
    const [spec, fifos] = await Promise.allSettled([specFetch, this.makeFifos(wanted, path)]);
    if (spec.status === 'rejected') {
      // A missing container explains a missing task: NotFoundError first.
      if (spec.reason instanceof NotFoundError) throw spec.reason;
      throw await notRunningOr(this.api, this.containerId, spec.reason);
    }
    if (fifos.status === 'rejected') throw fifos.reason;
    signal?.throwIfAborted();
    const request = {
      container_id: this.containerId,
      exec_id: this.execId,
      stdin: this.stdin ? path('stdin') : '',
      stdout: this.stdout ? path('stdout') : '',
      stderr: this.stderr ? path('stderr') : '',
      terminal: stdio.tty,
      spec: jsonAny(OCI_PROCESS_TYPE_URL, spec.value),
    };
    await unaryCall(this.api.tasks, 'Exec', request).catch(async (error: unknown) => {
      // A task that is not running says so (its state), else containerd's refusal.
      throw await notRunningOr(this.api, this.containerId, error);
    });
    this.created = true;
    const ids = { container_id: this.containerId, exec_id: this.execId };
    // The shim keeps an exec's exit until DeleteProcess, so a Wait that reaches it late still answers.
    this.resolveExit(
      unaryCall<{ exit_status: number }>(this.api.tasks, 'Wait', ids, {
        timeoutMs: Infinity,
        signal: this.waitAbort.signal,
      }),
    );
    await startAfter;
    signal?.throwIfAborted();
    this.mayRun = true;
    await unaryCall(this.api.tasks, 'Start', ids).catch(async (error: unknown) => {
      throw await notRunningOr(this.api, this.containerId, error);
    });
  }

  private async makeFifos(
    wanted: ReadonlyArray<'stdin' | 'stdout' | 'stderr'>,
    path: (name: string) => string,
  ): Promise<void> {
    // On the loop, like the mkfifo and the opens: calls of microseconds that cannot
    // block, which waited milliseconds for the thread pool during an exec's start.
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Whose exec this is, for the sweep of a later start (sweepExecDirs) if this process
    // dies before removing the directory.
    writeFileSync(path(CONTAINER_FILE), this.containerId, { mode: 0o600 });
    for (const name of wanted) mkfifo(path(name), 0o600);
    const opened = await Promise.allSettled(
      wanted.map(async (name) => {
        this[name] =
          name === 'stdin' ? await openFifoWriter(path(name), 'before-reader') : await openFifoReader(path(name));
      }),
    );
    for (const result of opened) if (result.status === 'rejected') throw result.reason;
  }

  private async removeAll(): Promise<void> {
    const ids = { container_id: this.containerId, exec_id: this.execId };
    const options = { timeoutMs: DEFAULT_EXEC_CLEANUP_TIMEOUT_MS };
    const failures: unknown[] = [];
    if (this.mayRun) {
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
    if (this.created)
      await ignoreNotFound(unaryCall(this.api.tasks, 'DeleteProcess', ids, options)).catch((error: unknown) =>
        failures.push(error),
      );
    this.waitAbort.abort();
    for (const end of [this.stdin, this.stdout, this.stderr]) end?.destroy();
    removeExecDir(this.dir);
    if (failures.length > 0) throw failures[0];
  }
}

/** The container's own process spec, from containers.Get. */
async function containerProcess(api: ContainerdApi, containerId: string): Promise<OciProcess> {
  const record = await unaryCall<{ container: { spec: WireAny | null } }>(api.containers, 'Get', {
    id: containerId,
  }).catch((error: unknown) => {
    if (hasStatus(error, Status.NOT_FOUND)) throw new NotFoundError('container', containerId);
    throw error;
  });
  const any = record.container.spec;
  if (!any || any.type_url !== OCI_SPEC_TYPE_URL) {
    throw new CriLedgerError(
      `container ${containerId} has no OCI spec (type ${any?.type_url ?? 'none'}) to take the exec's process from`,
    );
  }
  const own = parseJsonAny<{ process?: OciProcess }>(any).process;
  if (!own) throw new CriLedgerError(`container ${containerId}'s OCI spec has no process to take the exec's from`);
  return own;
}

/**
 * What to throw for `error`, a failed step of an exec's start: ContainerNotRunningError
 * when the container's task is missing or not running (tasks.Get, asked only now), else
 * `error` itself (also when containerd cannot say).
 */
async function notRunningOr(api: ContainerdApi, containerId: string, error: unknown): Promise<unknown> {
  const state = await unaryCall<{ process: { status: string } }>(api.tasks, 'Get', {
    container_id: containerId,
    exec_id: '',
  }).then(
    (task) => task.process.status.toLowerCase(),
    (getError: unknown) => (hasStatus(getError, Status.NOT_FOUND) ? 'no task' : 'running'),
  );
  return state === 'running' ? error : new ContainerNotRunningError(containerId, state, { cause: error });
}

/**
 * The container's own process spec with `args` = cmd, as containerd's CRI builds an
 * exec's: with a tty, `terminal` and TERM=xterm (replacing the container's TERM).
 */
function execProcessSpec(own: OciProcess, cmd: readonly string[], tty: boolean): OciProcess {
  if (!tty) return { ...own, args: [...cmd], terminal: false };
  const env = [...(own.env ?? []).filter((entry) => !entry.startsWith('TERM=')), 'TERM=xterm'];
  return { ...own, args: [...cmd], terminal: true, env };
}

/**
 * Removes an exec's directory: a few FIFOs and the container file, unlinked on the loop
 * (microseconds each, none can block), where a recursive rm went through the thread
 * pool with a stat of each entry.
 */
function removeExecDir(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    // Never made, or gone; anything else there (not a directory) goes as it is.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') rmSync(dir, { force: true, recursive: true });
    return;
  }
  try {
    for (const name of names) unlinkSync(join(dir, name));
    rmdirSync(dir);
  } catch {
    rmSync(dir, { force: true, recursive: true }); // something else in it
  }
}

/** The file in an exec's FIFO directory that names its container. */
const CONTAINER_FILE = 'container';

/** The exec directories in `fifoDir` now: at start, before any exec of this process makes one. */
export function execDirsLeft(fifoDir: string): string[] {
  try {
    return readdirSync(fifoDir);
  } catch {
    return [];
  }
}

/**
 * Removes what execs of an earlier run of the service left (it died during an ExecSync,
 * or between making a session's process and starting it): each process is deleted from
 * its shim (killed first if it runs), then its FIFO directory. Best effort: a directory
 * goes even when containerd does not answer. Returns how many there were.
 */
export async function sweepExecDirs(api: ContainerdApi, fifoDir: string, execIds: readonly string[]): Promise<number> {
  for (const execId of execIds) {
    const dir = join(fifoDir, execId);
    const containerId = await readFile(join(dir, CONTAINER_FILE), 'utf8').catch(() => '');
    if (containerId) {
      const ids = { container_id: containerId, exec_id: execId };
      const options = { timeoutMs: DEFAULT_EXEC_CLEANUP_TIMEOUT_MS };
      await ignoreNotFound(unaryCall(api.tasks, 'DeleteProcess', ids, options))
        .catch(() => killExec(api, containerId, execId))
        .catch(() => undefined);
    }
    removeExecDir(dir);
  }
  return execIds.length;
}

/**
 * Kills and deletes an exec process by id, for startup recovery: a session a crashed
 * service left open may have left its process running. One that is gone is fine.
 */
export async function killExec(api: ContainerdApi, containerId: string, execId: string): Promise<void> {
  const ids = { container_id: containerId, exec_id: execId };
  await ignoreNotFound(unaryCall(api.tasks, 'Kill', { ...ids, signal: osConstants.signals.SIGKILL, all: false }));
  // The shim refuses to delete a process that has not exited yet: give the SIGKILL a moment.
  for (let attempt = 1; ; attempt++) {
    try {
      await ignoreNotFound(unaryCall(api.tasks, 'DeleteProcess', ids));
      return;
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
