import { FailedPreconditionError, NotFoundError } from '../domain/errors.js';
import type { NewEvent } from '../domain/events.js';
import { containerStream } from '../domain/ids.js';
import type { ContainerRecord } from '../projections/container-store.js';
import type { KeyedLock } from './keyed-lock.js';
import type { Ledger } from './ledger.js';
import { SIGKILL } from './pod-runtime.js';
import type { ContainerFiles, ContainerLogs, ContainerRuntime, TaskRuntime } from './ports.js';
import { NO_FAILPOINTS, type Failpoints } from './saga.js';

/*
 * A container's life after CreateContainer, the way kubelet drives it and containerd's
 * CRI plugin answers (docs/container-lifecycle.md):
 *
 *   StartContainer   CREATED -> RUNNING (ContainerStarted), or EXITED with StartError
 *   (task exit)      RUNNING -> EXITED (ContainerExited: Completed, Error or OOMKilled)
 *   StopContainer    RUNNING -> EXITED (ContainerStopped + ContainerExited); else a no-op,
 *                    an unknown id too
 *
 * Once an exit is recorded (by a stop or from containerd's events) the task is deleted,
 * as containerd's CRI does: its shim goes, and RemoveContainer has nothing slow left.
 *   RemoveContainer  any -> gone (ContainerRemoved); an unknown id is fine
 *
 * Each runs under the container's lock, reads the record, does its side effects (keyed
 * by the id, each safe to repeat), then appends at the version it read.
 *
 * Failpoints (tests only) name what has just happened: StartContainer.LogsAttached,
 * .TaskStarted, .ContainerStarted; StopContainer.TaskStopped, .ContainerStopped,
 * .TaskDeleted; RemoveContainer.Stopped, .TaskDeleted, .ResourcesRemoved,
 * .ContainerRemoved. A crash at any of them leaves what a restart reconciles.
 */

export interface LifecycleDeps {
  ledger: Ledger;
  locks: KeyedLock;
  tasks: TaskRuntime;
  logs: ContainerLogs;
  files: ContainerFiles;
  runtime: ContainerRuntime;
  /** Containers containerd reported an OOM for; their next exit is `OOMKilled`. */
  oomed: Set<string>;
  /**
   * Containers whose task this process deleted once their exit was recorded (a stop, or
   * an exit containerd reported): RemoveContainer skips asking containerd again, a call
   * that would only answer NOT_FOUND. Empty after a restart, when it asks.
   */
  tasksDeleted: Set<string>;
  /** The snapshotter, for records that predate SnapshotPrepared. */
  snapshotter: string;
  failpoints?: Failpoints;
}

export interface LifecycleCommand {
  containerId: string;
  correlationId: string;
  /** Now, ISO 8601. */
  now: string;
}

/** The exit code containerd's CRI gives a container whose task could not start. */
export const START_ERROR_EXIT_CODE = 128;
/** The exit code for an exit nobody saw (the task was gone when asked), as containerd records it. */
export const UNKNOWN_EXIT_CODE = 255;

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGSTOP: 19,
  SIGPWR: 30,
  SIGWINCH: 28,
};

/** A signal from the image's StopSignal (`SIGTERM`, `TERM` or `15`); SIGTERM when unknown. */
export function stopSignalNumber(signal: string | undefined): { name: string; number: number } {
  const s = (signal ?? '').trim().toUpperCase();
  if (/^\d+$/.test(s)) return { name: s, number: Number(s) };
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  const number = SIGNALS[name];
  return number === undefined ? { name: 'SIGTERM', number: 15 } : { name, number };
}

/** Completed, Error or OOMKilled, as kubelet and containerd name them. */
export function exitReason(exitCode: number, oom: boolean): string {
  if (oom) return 'OOMKilled';
  return exitCode === 0 ? 'Completed' : 'Error';
}

function find(deps: LifecycleDeps, ref: string): ContainerRecord | undefined {
  return deps.ledger.projections.findContainer(ref);
}

function mustFind(deps: LifecycleDeps, ref: string): ContainerRecord {
  const c = find(deps, ref);
  if (!c || c.state === 'CREATING') throw new NotFoundError('container', ref);
  return c;
}

function hit(deps: LifecycleDeps, point: string): Promise<void> {
  return (deps.failpoints ?? NO_FAILPOINTS).hit(point);
}

async function appendTo(deps: LifecycleDeps, c: ContainerRecord, events: NewEvent[]): Promise<void> {
  await deps.ledger.append(containerStream(c.id), c.version, events);
}

function exitedEvent(
  deps: LifecycleDeps,
  o: { correlationId: string },
  c: ContainerRecord,
  exit: { exitCode: number; exitedAt: string },
): NewEvent {
  const oom = deps.oomed.delete(c.id);
  return {
    type: 'ContainerExited',
    correlationId: o.correlationId,
    data: { exitCode: exit.exitCode, finishedAt: exit.exitedAt, reason: exitReason(exit.exitCode, oom), message: '' },
  };
}

/** StartContainer: CREATED only; a start that fails leaves the container EXITED with the reason, as containerd does. */
export async function startContainer(deps: LifecycleDeps, o: LifecycleCommand): Promise<void> {
  const id = mustFind(deps, o.containerId).id;
  await deps.locks.run(id, async () => {
    const c = mustFind(deps, id);
    if (c.state !== 'CREATED')
      throw new FailedPreconditionError(
        `container ${c.id} is ${c.state}, not CREATED: only a created container can be started`,
      );
    const sandbox = deps.ledger.projections.sandboxes.get(c.sandboxId);
    if (!sandbox || sandbox.state !== 'READY')
      throw new FailedPreconditionError(`sandbox ${c.sandboxId} of container ${c.id} is not ready`);
    // A mount host path swapped to a symlink since CreateContainer is refused before anything happens.
    await deps.files.checkMountSources(c.id);
    const io = deps.files.ioFor(c.id, { stdin: c.stdin ?? false, tty: c.tty ?? false });
    // The read ends first: the shim's open of the write ends waits for a reader.
    await deps.logs.attach(c.id, { logPath: c.logPath ?? '', io });
    await hit(deps, 'StartContainer.LogsAttached');
    let pid: number;
    try {
      ({ pid } = await deps.tasks.start(c.id, io));
    } catch (error) {
      await deps.logs.abandon(c.id);
      const message = `failed to start: ${error instanceof Error ? error.message : String(error)}`;
      await appendTo(deps, c, [
        {
          type: 'ContainerExited',
          correlationId: o.correlationId,
          data: { exitCode: START_ERROR_EXIT_CODE, finishedAt: o.now, reason: 'StartError', message },
        },
      ]);
      throw error;
    }
    try {
      await hit(deps, 'StartContainer.TaskStarted');
      await appendTo(deps, c, [
        { type: 'ContainerStarted', correlationId: o.correlationId, data: { pid, startedAt: o.now } },
      ]);
    } catch (error) {
      // The start could not be recorded (a full disk, say): undo it, so containerd agrees
      // with the log (CREATED) and kubelet's retry starts it again once the log can write.
      await deps.tasks.stop(c.id, SIGKILL, 0).catch(() => undefined);
      await deps.tasks.delete(c.id).catch(() => undefined);
      await deps.logs.abandon(c.id);
      throw error;
    }
    await hit(deps, 'StartContainer.ContainerStarted');
  });
}

/**
 * StopContainer(timeout): the stop signal (the image's, else SIGTERM), up to `timeoutMs`,
 * then SIGKILL; a timeout of 0 sends SIGKILL at once. Stopping a container that is not
 * running is a no-op, as kubelet expects, and so is stopping an unknown one: the CRI
 * makes stop idempotent, and a container already removed is as stopped as it gets.
 */
export async function stopContainer(deps: LifecycleDeps, o: LifecycleCommand & { timeoutMs: number }): Promise<void> {
  const c = find(deps, o.containerId);
  if (!c || c.state !== 'RUNNING') return;
  await deps.locks.run(c.id, () => stopLocked(deps, o, c.id));
}

async function stopLocked(deps: LifecycleDeps, o: LifecycleCommand & { timeoutMs: number }, id: string): Promise<void> {
  const c = find(deps, id);
  if (!c || c.state !== 'RUNNING') return;
  const signal = o.timeoutMs > 0 ? stopSignalNumber(c.stopSignal) : { name: 'SIGKILL', number: SIGKILL };
  const exit = await deps.tasks.stop(c.id, signal.number, Math.max(0, o.timeoutMs));
  await hit(deps, 'StopContainer.TaskStopped');
  const current = find(deps, id);
  if (!current || current.state !== 'RUNNING') return; // the exit was recorded meanwhile
  const stopped: NewEvent = {
    type: 'ContainerStopped',
    correlationId: o.correlationId,
    data: {
      signal: signal.name,
      timeoutMs: Math.max(0, Math.round(o.timeoutMs)),
      killed: exit?.killed ?? false,
      stoppedAt: o.now,
    },
  };
  const finished = exit ?? { exitCode: UNKNOWN_EXIT_CODE, exitedAt: o.now };
  await appendTo(deps, current, [stopped, exitedEvent(deps, o, current, finished)]);
  await hit(deps, 'StopContainer.ContainerStopped');
  await deps.tasks.delete(c.id);
  deps.tasksDeleted.add(c.id);
  await hit(deps, 'StopContainer.TaskDeleted');
}

/**
 * RemoveContainer: stops it if it runs (SIGKILL), then deletes its task, the containerd
 * container, its snapshot, its directories and FIFOs, and records ContainerRemoved,
 * which frees the name. An unknown id succeeds, as kubelet expects.
 */
export async function removeContainer(deps: LifecycleDeps, o: LifecycleCommand): Promise<void> {
  const first = find(deps, o.containerId);
  if (!first) return;
  await deps.locks.run(first.id, async () => {
    const c = find(deps, first.id);
    if (!c) return;
    if (c.state === 'CREATING') throw new FailedPreconditionError(`container ${c.id} is still being created`);
    await stopLocked(deps, { ...o, containerId: c.id, timeoutMs: 0 }, c.id);
    await hit(deps, 'RemoveContainer.Stopped');
    // containerd refuses to delete a container that has a task; the rest is independent.
    if (!deps.tasksDeleted.delete(c.id)) await deps.tasks.delete(c.id);
    await hit(deps, 'RemoveContainer.TaskDeleted');
    await Promise.all([
      deps.logs.detach(c.id),
      deps.runtime.deleteContainer(c.id),
      deps.runtime.removeSnapshot(c.id, c.snapshot?.snapshotter ?? deps.snapshotter),
      deps.files.removeDirs(c.id),
    ]);
    deps.oomed.delete(c.id);
    await hit(deps, 'RemoveContainer.ResourcesRemoved');
    const current = find(deps, c.id);
    if (current)
      await appendTo(deps, current, [
        { type: 'ContainerRemoved', correlationId: o.correlationId, data: { name: current.name, removedAt: o.now } },
      ]);
    await hit(deps, 'RemoveContainer.ContainerRemoved');
  });
}

/**
 * Records an exit containerd reported (or that the task's state shows after a missed
 * event). Only a RUNNING container changes; anything else was recorded already. Returns
 * whether an event was written.
 */
export async function recordExit(
  deps: LifecycleDeps,
  o: { containerId: string; exitCode: number; exitedAt: string; correlationId: string },
): Promise<boolean> {
  const c = find(deps, o.containerId);
  if (!c) return false;
  return deps.locks.run(c.id, async () => {
    const current = find(deps, c.id);
    if (!current || current.state !== 'RUNNING') return false;
    await appendTo(deps, current, [exitedEvent(deps, o, current, o)]);
    // The exit is in the log now: the task (and its shim) can go, as containerd's CRI
    // deletes it on exit. RemoveContainer deletes it too, for exits recorded before.
    await deps.tasks.delete(c.id);
    deps.tasksDeleted.add(c.id);
    return true;
  });
}

/** Appends events to a container's stream under its lock, at the version current then (ExecRan, resource updates). */
export async function appendContainerEvents(
  deps: Pick<LifecycleDeps, 'ledger' | 'locks'>,
  containerId: string,
  events: (c: ContainerRecord) => NewEvent[],
): Promise<void> {
  await deps.locks.run(containerId, async () => {
    const c = deps.ledger.projections.containers.get(containerId);
    if (!c) throw new NotFoundError('container', containerId);
    await deps.ledger.append(containerStream(c.id), c.version, events(c));
  });
}

/** The CRI's LinuxContainerResources, int64s as decimal strings (as the CRI server decodes them). */
export interface CriLinuxResources {
  cpuPeriod: string;
  cpuQuota: string;
  cpuShares: string;
  memoryLimitInBytes: string;
  oomScoreAdj: string;
  cpusetCpus: string;
  cpusetMems: string;
}

/** The OCI LinuxResources a task update carries: only what is set (zero means unset, as in containerd). */
export function ociLinuxResources(r: CriLinuxResources): Record<string, unknown> {
  const n = (v: string): number => Number(v || '0');
  const cpu = {
    ...(n(r.cpuShares) > 0 ? { shares: n(r.cpuShares) } : {}),
    ...(n(r.cpuQuota) !== 0 ? { quota: n(r.cpuQuota) } : {}),
    ...(n(r.cpuPeriod) > 0 ? { period: n(r.cpuPeriod) } : {}),
    ...(r.cpusetCpus ? { cpus: r.cpusetCpus } : {}),
    ...(r.cpusetMems ? { mems: r.cpusetMems } : {}),
  };
  return { cpu, ...(n(r.memoryLimitInBytes) > 0 ? { memory: { limit: n(r.memoryLimitInBytes) } } : {}) };
}

/**
 * UpdateContainerResources: the running container's task gets the new limits, and
 * ContainerResourcesUpdated records them (ContainerStatus shows them from then on).
 * Only a running container can be updated (FAILED_PRECONDITION otherwise): the limits
 * live in its cgroup, and the spec containerd holds is the one recorded at create.
 */
export async function updateContainerResources(
  deps: LifecycleDeps,
  o: LifecycleCommand & { resources: CriLinuxResources },
): Promise<void> {
  const id = mustFind(deps, o.containerId).id;
  await deps.locks.run(id, async () => {
    const c = mustFind(deps, id);
    if (c.state !== 'RUNNING')
      throw new FailedPreconditionError(
        `container ${c.id} is ${c.state}, not RUNNING: only a running container's resources can be updated`,
      );
    await deps.tasks.update(c.id, ociLinuxResources(o.resources));
    await appendTo(deps, c, [
      { type: 'ContainerResourcesUpdated', correlationId: o.correlationId, data: { resources: o.resources } },
    ]);
  });
}
