import type { Logger } from 'pino';
import { recordExit, UNKNOWN_EXIT_CODE, type LifecycleDeps } from '../../commands/container-lifecycle.js';
import { SIGKILL } from '../../commands/pod-runtime.js';
import type { TaskEvents } from '../../commands/ports.js';
import { newEventId } from '../ids/event-id.js';

/**
 * Turns containerd's task events into ContainerExited records, and catches what a
 * subscription cannot see:
 *
 * - an exit of a container's init process (exec id empty) is recorded with its code and
 *   time; an OOM event before it makes the reason `OOMKilled`;
 * - whenever the subscription is (re)established, every container the log says is
 *   RUNNING is checked against containerd: a task that stopped meanwhile has its real
 *   exit recorded, a task that is gone gets exit code 255 (nobody saw the exit, as
 *   containerd records it); a running one has its output reattached to its log file,
 *   since this process may be new.
 *
 * Exits of pause tasks and of exec processes are not container exits; they are ignored.
 * `onConnected` runs before each of those checks: startup recovery, which needs
 * containerd, waits for it the same way.
 */
/** How soon the running containers are checked again after an exit could not be recorded (a full disk, say). */
export const DEFAULT_EXIT_RECHECK_MS = 2_000;

export class ExitMonitor {
  private running: Promise<void> | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly o: {
      events: TaskEvents;
      lifecycle: LifecycleDeps;
      logger: Logger;
      /** Runs first whenever containerd is reachable again (startup recovery of sagas cut short). */
      onConnected?: () => Promise<void>;
      /** The ids of the containers that have a task in containerd: one call instead of one per container. */
      taskIds?: () => Promise<ReadonlySet<string>>;
      recheckMs?: number;
    },
  ) {}

  start(): void {
    if (this.running) return;
    this.o.events.start();
    this.running = this.consume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.recheck);
    await this.o.events.stop();
    await this.running;
  }

  /**
   * An exit that could not be recorded is not seen again from the subscription: check
   * the running containers against containerd a little later, and again until every
   * exit is in the log (containerd keeps a stopped task, with its exit, until deleted).
   */
  private scheduleRecheck(): void {
    if (this.recheck || this.stopped) return;
    this.recheck = setTimeout(() => {
      this.recheck = undefined;
      // In a timer, with nobody to await it: a check that fails outright is logged and tried again.
      void this.reconcile().then(
        (complete) => {
          if (!complete) this.scheduleRecheck();
        },
        (error: unknown) => {
          this.o.logger.error({ err: error }, 'checking the running containers against containerd failed');
          this.scheduleRecheck();
        },
      );
    }, this.o.recheckMs ?? DEFAULT_EXIT_RECHECK_MS);
    this.recheck.unref();
  }

  private async consume(): Promise<void> {
    const { lifecycle, logger } = this.o;
    for await (const event of this.o.events) {
      try {
        switch (event.kind) {
          case 'oom':
            if (lifecycle.ledger.projections.containers.get(event.containerId)) lifecycle.oomed.add(event.containerId);
            break;
          case 'exit':
            if (event.execId !== '' && event.execId !== event.containerId) break;
            const record = lifecycle.ledger.projections.containers.get(event.containerId);
            if (!record) break;
            // The exit of an earlier task of this container (a start whose record could
            // not be written was undone, then retried) is not this run's exit.
            if (record.pid !== undefined && event.pid !== 0 && event.pid !== record.pid) break;
            await recordExit(lifecycle, {
              containerId: event.containerId,
              exitCode: event.exitCode,
              exitedAt: event.exitedAt,
              correlationId: newEventId(),
            });
            break;
          case 'subscribed':
          case 'resubscribed':
            await this.o.onConnected?.();
            if (!(await this.reconcile())) this.scheduleRecheck();
            break;
        }
      } catch (error) {
        logger.error({ err: error, event }, 'recording a task event failed');
        if (event.kind === 'exit') this.scheduleRecheck();
      }
    }
  }

  /** Checks every RUNNING container against containerd (see the class comment); false when a check or a record failed. */
  async reconcile(): Promise<boolean> {
    const { lifecycle, logger } = this.o;
    if (this.stopped) return true;
    let complete = true;
    const running = [...lifecycle.ledger.projections.containers.values()].filter((c) => c.state === 'RUNNING');
    for (const c of running) {
      try {
        const state = await lifecycle.tasks.state(c.id);
        if (state?.status === 'RUNNING' || state?.status === 'PAUSED' || state?.status === 'CREATED') {
          if (!lifecycle.logs.attached(c.id)) {
            await lifecycle.logs.attach(c.id, {
              logPath: c.logPath ?? '',
              io: lifecycle.files.ioFor(c.id, { stdin: c.stdin ?? false, tty: c.tty ?? false }),
            });
          }
          continue;
        }
        const exit =
          state?.status === 'STOPPED' && state.exitCode !== undefined
            ? { exitCode: state.exitCode, exitedAt: state.exitedAt ?? new Date().toISOString() }
            : { exitCode: UNKNOWN_EXIT_CODE, exitedAt: new Date().toISOString() };
        if (await recordExit(lifecycle, { containerId: c.id, ...exit, correlationId: newEventId() })) {
          logger.info(
            { containerId: c.id, exitCode: exit.exitCode, task: state?.status ?? 'gone' },
            'recorded an exit missed while not subscribed',
          );
        }
      } catch (error) {
        complete = false;
        logger.error({ err: error, containerId: c.id }, 'checking a running container against containerd failed');
      }
    }
    await this.removeStrayTasks();
    return complete;
  }

  /**
   * Deletes the task of a container the log says is not running (CREATED, or EXITED: a
   * StartContainer cut off by containerd going away records StartError, but the task it
   * had created stays, with its shim). Under the container's lock, so a start in
   * progress is never taken for one.
   */
  private async removeStrayTasks(): Promise<void> {
    const { lifecycle, logger } = this.o;
    let withTask: ReadonlySet<string> | undefined;
    try {
      withTask = await this.o.taskIds?.();
    } catch (error) {
      logger.error({ err: error }, 'listing containerd tasks failed; checking each stopped container');
    }
    const idle = [...lifecycle.ledger.projections.containers.values()].filter(
      (c) => (c.state === 'CREATED' || c.state === 'EXITED') && (withTask?.has(c.id) ?? true),
    );
    for (const c of idle) {
      try {
        await lifecycle.locks.run(c.id, async () => {
          const current = lifecycle.ledger.projections.containers.get(c.id);
          if (!current || (current.state !== 'CREATED' && current.state !== 'EXITED')) return;
          const task = await lifecycle.tasks.state(c.id);
          if (!task) return;
          if (task.status !== 'STOPPED') await lifecycle.tasks.stop(c.id, SIGKILL, 0);
          await lifecycle.tasks.delete(c.id);
          logger.warn(
            { containerId: c.id, state: current.state, task: task.status },
            'deleted a task the log does not account for',
          );
        });
      } catch (error) {
        logger.error({ err: error, containerId: c.id }, 'checking a stopped container for a stray task failed');
      }
    }
  }
}
