import { ExecTimeoutError, InvalidArgumentError, OperationTimeoutError } from '../domain/errors.js';
import type { EventData } from '../domain/events.js';
import { freeText } from '../domain/text.js';
import { appendContainerEvents, type LifecycleDeps } from './container-lifecycle.js';
import type { ExecRunner } from './ports.js';
import { runningContainer } from './streaming-sessions.js';

/*
 * ExecSync: run a command in a running container, return its output, and record
 * ExecRan (the command, the exit code or the timeout, the byte counts; never the output
 * itself). The probe kubelet runs every few seconds is on the record like a person's
 * `crictl exec -s`. A record that cannot be written does not fail the call: the command
 * has run, and its caller (a probe, usually) needs the answer.
 */

export interface ExecSyncDeps {
  lifecycle: Pick<LifecycleDeps, 'ledger' | 'locks'>;
  exec: ExecRunner;
  /** Milliseconds on a monotonic clock, for the duration of a command that timed out. */
  clock: () => number;
}

export interface ExecSyncCommand {
  containerId: string;
  cmd: string[];
  /** Seconds, as CRI gives it (int64 as a decimal string); 0: no timeout. */
  timeout: string;
  correlationId: string;
}

const rounded = (ms: number): number => Math.round(ms * 1000) / 1000;

export async function execSync(deps: ExecSyncDeps, o: ExecSyncCommand) {
  const record = runningContainer(deps.lifecycle.ledger.projections, o.containerId, 'nothing can be executed in it');
  if (o.cmd.length === 0) throw new InvalidArgumentError('cmd', 'must name a command');
  o.cmd.forEach((arg, i) => freeText(arg, `cmd[${i}]`));
  const timeoutMs = Number(o.timeout) * 1000;
  const started = deps.clock();
  const recordExec = (data: EventData['ExecRan']) =>
    appendContainerEvents(deps.lifecycle, record.id, () => [
      { type: 'ExecRan', correlationId: o.correlationId, data },
    ]).catch(() => undefined);
  try {
    const r = await deps.exec.execSync(record.id, { cmd: o.cmd, timeoutMs });
    await recordExec({
      execId: r.execId,
      cmd: o.cmd,
      exitCode: r.exitCode,
      timedOut: false,
      durationMs: rounded(r.durationMs),
      stdoutBytes: r.stdout.length,
      stderrBytes: r.stderr.length,
      truncated: r.stdoutTruncated || r.stderrTruncated,
    });
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  } catch (error) {
    if (!(error instanceof ExecTimeoutError)) throw error;
    await recordExec({
      execId: error.execId,
      cmd: o.cmd,
      exitCode: -1,
      timedOut: true,
      durationMs: rounded(deps.clock() - started),
      stdoutBytes: 0,
      stderrBytes: 0,
      truncated: false,
    });
    throw new OperationTimeoutError(
      `command ${JSON.stringify(o.cmd)} in container ${record.id} timed out after ${o.timeout}s; it was killed`,
      { cause: error },
    );
  }
}
