import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { runCli, startServe, tempRoot, writeScenarioLog, type ServeProcess } from '../support/cli.js';
import { ev, streams } from '../support/fixtures.js';
import type { ScenarioAppend } from '../support/scenario.js';
import { pod, runningContainer } from '../support/streaming.js';

/*
 * A service killed while sessions were open: the next `serve` ends each one on the
 * record (reason service-restarted, the start as the cause, no byte counts), so no
 * session stays open forever. No containerd is needed for that.
 */

// The scenario's pods are pod0..podN-1: one pod keeps `pod` (pod1) free for these.
const app = runningContainer('recovered-app');

const versions = new Map<string, number>();
function append(stream: string, ...events: ScenarioAppend['events']): ScenarioAppend {
  const expected = versions.get(stream) ?? 0;
  versions.set(stream, expected + events.length);
  return { stream, expected, events };
}

const EXTRA: ScenarioAppend[] = [
  append(streams.sandbox(pod), ev.sandboxReserved(pod), ev.sandboxReady()),
  append(streams.container(app.ref), ...app.events.map(([, e]) => e)),
  append(streams.container(app.ref), ev.execStarted('open-exec', ['sh'])),
  append(streams.container(app.ref), ev.execStarted('done-exec', ['ls'])),
  append(streams.container(app.ref), ev.execEnded('done-exec', 0)),
  append(streams.sandbox(pod), ev.portForwardStarted('open-pf', [5432])),
];

describe('sessions a killed service left open', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let written: LedgerEvent[];
  let serve: ServeProcess;
  let socket: string;
  const cli = async (...args: string[]) => {
    const r = await runCli([...args, '--socket', socket]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  before(async () => {
    root = await tempRoot('cri-ledger-e2e-sessions-');
    socket = join(root.dir, 'run', 's.sock');
    written = await writeScenarioLog(join(root.dir, 'ledger'), { pods: 1, seed: 3, extra: EXTRA });
    serve = await startServe({ root: root.dir, socket });
  });
  after(async () => {
    await serve?.stop('SIGKILL');
    await root?.cleanup();
  });

  it('ends each open session at startup with service-restarted, once, and leaves none open', async () => {
    let ended: LedgerEvent[] = [];
    const deadline = Date.now() + 20_000;
    while (ended.length < 2 && Date.now() < deadline) {
      const out = await cli('events', '--type', 'ExecEnded', '--type', 'PortForwardEnded', '--json');
      ended = out
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LedgerEvent)
        .filter((e) => e.seq > written.length);
      if (ended.length < 2) await new Promise((r) => setTimeout(r, 100));
    }
    const ids = ended.map((e) => `${e.type} ${(e.data as { sessionId: string }).sessionId}`);
    assert.deepEqual(
      ids.sort((a, b) => a.localeCompare(b)),
      ['ExecEnded open-exec', 'PortForwardEnded open-pf'],
    );
    for (const e of ended) {
      const d = e.data as { reason: string; bytesIn?: number; error?: string };
      assert.equal(d.reason, 'service-restarted');
      assert.equal(d.bytesIn, undefined);
      assert.match(d.error ?? '', /restarted while the session was open/);
    }
    const execEnd = ended.find((e) => e.type === 'ExecEnded')!;
    const openExec = written.find(
      (e) => e.type === 'ExecStarted' && (e.data as { sessionId: string }).sessionId === 'open-exec',
    )!;
    assert.deepEqual([execEnd.correlationId, execEnd.causationId], [openExec.correlationId, openExec.id]);
    const status = JSON.parse(await cli('status', '--json')) as { counts: { openSessions: number } };
    assert.equal(status.counts.openSessions, 0);
  });

  it('shows the sessions in the container timeline', async () => {
    const out = await cli('timeline', app.ref.id);
    assert.match(out, /^SESSIONS \(2\)$/m);
    assert.match(out, /open-exec\s+exec\s+req-exec-open-exec\s.*service-restarted\s+-\s+sh$/m);
    assert.match(out, /done-exec\s+exec\s+req-exec-done-exec\s.*exit 0\s+0B in, 42B out\s+ls$/m);
  });
});
