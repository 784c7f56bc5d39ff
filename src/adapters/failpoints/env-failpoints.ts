import { setTimeout as sleep } from 'node:timers/promises';
import type { Failpoints } from '../../commands/saga.js';
import { CriLedgerError, InvalidArgumentError } from '../../domain/errors.js';

/*
 * Failpoints for tests, from CRI_LEDGER_FAILPOINTS:
 *   CreateContainer.SnapshotPrepared=error,RunPodSandbox.SandboxReady=delay(500),StartContainer.Started=crash
 * `error` fails the step, `delay(ms)` stalls it, `crash` ends the process at once as
 * SIGKILL would. Unset, every failpoint is a no-op.
 */
export const FAILPOINTS_ENV = 'CRI_LEDGER_FAILPOINTS';

export type FailpointAction = { kind: 'error' } | { kind: 'crash' } | { kind: 'delay'; ms: number };

/** The error an `error` failpoint throws. */
export class FailpointError extends CriLedgerError {
  readonly code = 'FAILPOINT';
  constructor(readonly point: string) {
    super(`failpoint ${point} fired`);
  }
}

/** Parses the variable's value; a malformed entry names itself. */
export function parseFailpoints(value: string | undefined): Map<string, FailpointAction> {
  const points = new Map<string, FailpointAction>();
  for (const entry of (value ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)) {
    const m = /^([A-Za-z]+\.[A-Za-z]+)=(error|crash|delay\((\d+)\))$/.exec(entry);
    if (!m)
      throw new InvalidArgumentError(FAILPOINTS_ENV, `"${entry}" is not <Operation>.<Step>=error|crash|delay(ms)`);
    const action: FailpointAction =
      m[2] === 'error' ? { kind: 'error' } : m[2] === 'crash' ? { kind: 'crash' } : { kind: 'delay', ms: Number(m[3]) };
    points.set(m[1]!, action);
  }
  return points;
}

/** Failpoints read from the environment (CRI_LEDGER_FAILPOINTS). */
export function envFailpoints(env: NodeJS.ProcessEnv = process.env): Failpoints {
  const points = parseFailpoints(env[FAILPOINTS_ENV]);
  return {
    async hit(point) {
      const action = points.get(point);
      if (action === undefined) return;
      switch (action.kind) {
        case 'error':
          throw new FailpointError(point);
        case 'delay':
          await sleep(action.ms);
          return;
        case 'crash':
          process.kill(process.pid, 'SIGKILL');
          // SIGKILL is not delivered synchronously; never let the step go on meanwhile.
          await new Promise(() => undefined);
      }
    },
  };
}
