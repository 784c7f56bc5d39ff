import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { execSync } from '../../src/commands/exec-sync.js';
import type { ExecRunner } from '../../src/commands/ports.js';
import {
  ExecTimeoutError,
  FailedPreconditionError,
  InvalidArgumentError,
  OperationTimeoutError,
} from '../../src/domain/errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { containerStream } from '../../src/domain/ids.js';
import { ev, streams } from '../support/fixtures.js';
import { runningContainer, streamingWorld } from '../support/streaming.js';

const app = runningContainer('app');

/** A runner that answers `exit` after `ms`, or times out like ContainerdExec when `timeout` is set. */
function runner(o: { exitCode?: number; timeout?: boolean } = {}): ExecRunner & { calls: number } {
  return {
    calls: 0,
    async execSync(containerId, { cmd, timeoutMs }) {
      this.calls++;
      if (o.timeout) throw new ExecTimeoutError(containerId, 'exec-1', cmd, timeoutMs);
      return {
        stdout: Buffer.from('hello\n'),
        stderr: Buffer.alloc(0),
        exitCode: o.exitCode ?? 0,
        stdoutTruncated: false,
        stderrTruncated: false,
        durationMs: 12.3456,
        execId: 'exec-1',
      };
    },
  };
}

async function ran(w: Awaited<ReturnType<typeof streamingWorld>>): Promise<LedgerEvent<'ExecRan'>[]> {
  return (await w.log.readStream(containerStream(app.ref.id))).filter(
    (e): e is LedgerEvent<'ExecRan'> => e.type === 'ExecRan',
  );
}

describe('ExecSync', () => {
  it('answers the output and records ExecRan with the counts, never the output', async () => {
    const w = await streamingWorld(app.events);
    const exec = runner({ exitCode: 2 });
    const out = await execSync(
      { lifecycle: w.records, exec, clock: () => 0 },
      { containerId: app.ref.id, cmd: ['cat', '/etc/hostname'], timeout: '5', correlationId: 'req-x' },
    );
    assert.equal(out.exitCode, 2);
    const [record] = await ran(w);
    assert.deepEqual(record?.data, {
      execId: 'exec-1',
      cmd: ['cat', '/etc/hostname'],
      exitCode: 2,
      timedOut: false,
      durationMs: 12.346,
      stdoutBytes: 6,
      stderrBytes: 0,
      truncated: false,
    });
    assert.equal(record?.correlationId, 'req-x');
  });

  it('records a timeout and answers DEADLINE_EXCEEDED (OperationTimeoutError)', async () => {
    const w = await streamingWorld(app.events);
    let now = 100;
    await assert.rejects(
      execSync(
        { lifecycle: w.records, exec: runner({ timeout: true }), clock: () => (now += 1000) },
        { containerId: app.ref.id, cmd: ['sleep', '9'], timeout: '1', correlationId: 'req-x' },
      ),
      OperationTimeoutError,
    );
    const [record] = await ran(w);
    assert.deepEqual([record?.data.timedOut, record?.data.exitCode, record?.data.durationMs], [true, -1, 1000]);
  });

  it('refuses a stopped container and a NUL in the command before running anything', async () => {
    const w = await streamingWorld(app.events);
    const exec = runner();
    const deps = { lifecycle: w.records, exec, clock: () => 0 };
    await assert.rejects(
      execSync(deps, { containerId: app.ref.id, cmd: ['a\u0000b'], timeout: '1', correlationId: 'r' }),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === 'cmd[0]',
    );
    await w.ledger.append(streams.container(app.ref), 'any', [ev.containerExited(0)]);
    await assert.rejects(
      execSync(deps, { containerId: app.ref.id, cmd: ['ls'], timeout: '1', correlationId: 'r' }),
      FailedPreconditionError,
    );
    assert.equal(exec.calls, 0);
  });
});
