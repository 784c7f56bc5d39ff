import { constants as osConstants } from 'node:os';
import { status as Status } from '@grpc/grpc-js';
import type { RootfsMount } from '../../commands/ports.js';
import type { ContainerdApi } from './containerd-api.js';
import { hasStatus, unaryCall } from './containerd-calls.js';
import { ignoreNotFound, unavailableAsRuntimeError } from './containerd-errors.js';
import { jsonAny, timestampToNanos, type WireTimestamp } from './containerd-wire.js';

/** The Any type URL containerd registers for an OCI LinuxResources. */
export const LINUX_RESOURCES_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
import { runcOptionsAny } from './runc-options.js';

/**
 * Where the task's stdio goes: paths the shim opens (FIFOs, or plain files), undefined
 * for /dev/null. With `terminal`, the shim allocates a pty and only `stdout` is used.
 */
export interface TaskIo {
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal: boolean;
}

/** How a task's init process ended. `exitedAt` is RFC 3339 with nanoseconds. */
export interface TaskExit {
  exitCode: number;
  exitedAt: string;
}

/** What stop saw: the exit, and whether the timeout forced a SIGKILL. */
export interface TaskStopResult extends TaskExit {
  killed: boolean;
}

export type TaskStatus = 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'UNKNOWN';

/** A task's init process as Tasks.Get reports it; exit fields only once it has stopped. */
export interface TaskState {
  status: TaskStatus;
  pid: number;
  exitCode?: number;
  exitedAt?: string;
}

const SIGKILL = osConstants.signals.SIGKILL;
const TASK_STATUSES: ReadonlySet<string> = new Set(['CREATED', 'RUNNING', 'STOPPED', 'PAUSED']);

interface WireProcess {
  pid: number;
  status: string;
  exit_status: number;
  exited_at: WireTimestamp | null;
}

interface WireContainer {
  snapshotter: string;
  snapshot_key: string;
}

/** RFC 3339 in UTC with all nine digits of the fraction (a Date would keep three). */
export function formatTimestamp(timestamp: WireTimestamp): string {
  const nanos = timestampToNanos(timestamp);
  const seconds = nanos / 1_000_000_000n - (nanos < 0n && nanos % 1_000_000_000n !== 0n ? 1n : 0n);
  const fraction = nanos - seconds * 1_000_000_000n;
  const whole = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}.${fraction.toString().padStart(9, '0')}Z`;
}

/** A signal number from a number, `SIGTERM`, `TERM` or `15` (image StopSignal values). */
export function signalNumber(signal: number | string): number {
  if (typeof signal === 'number') return signal;
  const trimmed = signal.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const upper = trimmed.toUpperCase();
  const name = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as keyof typeof osConstants.signals;
  const number = osConstants.signals[name];
  if (number === undefined) throw new TypeError(`unknown signal ${signal}`);
  return number;
}

function exitOf(response: { exit_status: number; exited_at: WireTimestamp | null }): TaskExit {
  return { exitCode: response.exit_status, exitedAt: response.exited_at ? formatTimestamp(response.exited_at) : '' };
}

/** A container's init process as containerd's Tasks.Get reports it; undefined when it has no task. */
export function taskState(api: ContainerdApi, containerId: string): Promise<TaskState | undefined> {
  const call = unaryCall<{ process: WireProcess }>(api.tasks, 'Get', { container_id: containerId, exec_id: '' }).then(
    ({ process }): TaskState => {
      const status = (TASK_STATUSES.has(process.status) ? process.status : 'UNKNOWN') as TaskStatus;
      if (status !== 'STOPPED') return { status, pid: process.pid };
      return { status, pid: process.pid, ...exitOf(process) };
    },
    (error: unknown) => {
      if (hasStatus(error, Status.NOT_FOUND)) return undefined;
      throw error;
    },
  );
  return unavailableAsRuntimeError(call);
}

/**
 * Runs a container's init process through containerd's tasks service (runc via the
 * container's runtime, `io.containerd.runc.v2`).
 *
 * Every task is created with runc options `{ root: runcRoot }`, so runc's state lives at
 * `<runcRoot>/<namespace>/<containerId>` instead of /run/containerd/runc. The shim records
 * the options in the bundle, so later kills and deletes use the same root.
 *
 * Removals are idempotent: kill and delete of a task that is not there succeed, as does
 * a kill of a process that already exited. UNAVAILABLE becomes RuntimeUnavailableError;
 * every other failure stays a ContainerdCallError.
 */
export class ContainerdTasks {
  private readonly api: ContainerdApi;
  private readonly runcRoot: string;

  private readonly systemdCgroup: boolean;

  constructor(o: { api: ContainerdApi; runcRoot: string; systemdCgroup?: boolean }) {
    this.systemdCgroup = o.systemdCgroup ?? false;
    this.api = o.api;
    this.runcRoot = o.runcRoot;
  }

  /**
   * Creates the task (rootfs from the container's snapshot, the given stdio) and starts
   * it. `rootfs`, when the caller has the snapshot's mounts already (Prepare returns
   * them), saves two round trips: reading the container record and asking for them.
   */
  start(containerId: string, io: TaskIo, rootfs?: readonly RootfsMount[]): Promise<{ pid: number }> {
    return unavailableAsRuntimeError(this.createAndStart(containerId, io, rootfs));
  }

  /** Signals the init process (`all`: every process of the task); no task or no process is fine. */
  async kill(containerId: string, signal: number | string, opts: { all?: boolean } = {}): Promise<void> {
    const request = { container_id: containerId, exec_id: '', signal: signalNumber(signal), all: opts.all ?? false };
    return unavailableAsRuntimeError(ignoreNotFound(unaryCall(this.api.tasks, 'Kill', request)));
  }

  /** Resolves when the init process exits (at once if it has); no deadline, `signal` cancels. */
  wait(containerId: string, opts: { signal?: AbortSignal } = {}): Promise<TaskExit> {
    const call = unaryCall<{ exit_status: number; exited_at: WireTimestamp | null }>(
      this.api.tasks,
      'Wait',
      { container_id: containerId, exec_id: '' },
      { timeoutMs: Infinity, ...(opts.signal ? { signal: opts.signal } : {}) },
    );
    return unavailableAsRuntimeError(call.then(exitOf));
  }

  /**
   * Sends `signal`, waits up to `timeoutMs` for the exit, then SIGKILLs and waits again.
   * A process that has already exited reports its exit with `killed: false`; undefined
   * when there is no task. After the SIGKILL it waits without a deadline, as containerd's
   * CRI does: a process stuck in the kernel is reported by the caller's own deadline.
   */
  stop(containerId: string, signal: number, timeoutMs: number): Promise<TaskStopResult | undefined> {
    return unavailableAsRuntimeError(this.stopTask(containerId, signal, timeoutMs));
  }

  /** Deletes a stopped task and returns its exit code; undefined when there is no task. */
  delete(containerId: string): Promise<{ exitCode?: number } | undefined> {
    const call = unaryCall<{ exit_status: number }>(this.api.tasks, 'Delete', { container_id: containerId }).then(
      (response) => ({ exitCode: response.exit_status }),
      (error: unknown) => {
        if (hasStatus(error, Status.NOT_FOUND)) return undefined;
        throw error;
      },
    );
    return unavailableAsRuntimeError(call);
  }

  /** Applies new OCI LinuxResources (JSON in an Any, as containerd's client sends them) to the task's cgroup. */
  update(containerId: string, resources: Record<string, unknown>): Promise<void> {
    const request = {
      container_id: containerId,
      resources: jsonAny(LINUX_RESOURCES_TYPE_URL, resources),
      annotations: {},
    };
    return unavailableAsRuntimeError(unaryCall(this.api.tasks, 'Update', request).then(() => undefined));
  }

  /** The init process's state; undefined when the container has no task. */
  state(containerId: string): Promise<TaskState | undefined> {
    return taskState(this.api, containerId);
  }

  private async createAndStart(
    containerId: string,
    io: TaskIo,
    rootfs: readonly RootfsMount[] | undefined,
  ): Promise<{ pid: number }> {
    // containerd's own client does the same: the task's rootfs is the snapshot's mounts.
    const mounts = rootfs ?? (await this.snapshotMounts(containerId));
    const request = {
      container_id: containerId,
      rootfs: mounts,
      stdin: io.stdin ?? '',
      stdout: io.stdout ?? '',
      stderr: io.terminal ? '' : (io.stderr ?? ''),
      terminal: io.terminal,
      options: runcOptionsAny({ root: this.runcRoot, systemdCgroup: this.systemdCgroup }),
    };
    try {
      await unaryCall(this.api.tasks, 'Create', request);
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
      // A retry whose first attempt created the task: finish it; a task that already ran is an error.
      const existing = await this.state(containerId);
      if (existing?.status === 'RUNNING' || existing?.status === 'PAUSED') return { pid: existing.pid };
      if (existing?.status !== 'CREATED') throw error;
    }
    try {
      const { pid } = await unaryCall<{ pid: number }>(this.api.tasks, 'Start', {
        container_id: containerId,
        exec_id: '',
      });
      return { pid };
    } catch (error) {
      // A task that cannot start is removed, so a later start can try again from scratch.
      await ignoreNotFound(
        unaryCall(this.api.tasks, 'Kill', { container_id: containerId, exec_id: '', signal: SIGKILL, all: false }),
      ).catch(() => undefined);
      await this.delete(containerId).catch(() => undefined);
      throw error;
    }
  }

  private async snapshotMounts(containerId: string): Promise<RootfsMount[]> {
    const { container } = await unaryCall<{ container: WireContainer }>(this.api.containers, 'Get', {
      id: containerId,
    });
    const { mounts } = await unaryCall<{ mounts: RootfsMount[] }>(this.api.snapshots, 'Mounts', {
      snapshotter: container.snapshotter,
      key: container.snapshot_key,
    });
    return mounts;
  }

  private async stopTask(containerId: string, signal: number, timeoutMs: number): Promise<TaskStopResult | undefined> {
    const abort = new AbortController();
    // Wait before killing, as containerd's client does, so the exit cannot be missed.
    const exited = this.wait(containerId, { signal: abort.signal }).catch((error: unknown) => {
      if (hasStatus(error, Status.NOT_FOUND)) return undefined;
      throw error;
    });
    exited.catch(() => undefined);
    try {
      await this.kill(containerId, signal);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const first = await Promise.race([exited, timedOut]).finally(() => clearTimeout(timer));
      if (first === undefined) return undefined;
      if (first !== 'timeout') return { ...first, killed: false };
      await this.kill(containerId, SIGKILL);
      const last = await exited;
      return last && { ...last, killed: true };
    } finally {
      abort.abort();
    }
  }
}
