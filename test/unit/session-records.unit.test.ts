import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stopContainer, type LifecycleDeps } from '../../src/commands/container-lifecycle.js';
import type { ExecSessionPayload, PortForwardSessionPayload } from '../../src/commands/ports.js';
import { endSessionsLeftOpen } from '../../src/commands/recover.js';
import { recordSessionEnded, recordSessionStarted } from '../../src/commands/session-records.js';
import { FailedPreconditionError } from '../../src/domain/errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { containerStream, sandboxStream } from '../../src/domain/ids.js';
import { FakeFiles, FakeLogs, FakeRuntime, FakeTasks } from '../support/fake-runtime.js';
import { ev, streams, time } from '../support/fixtures.js';
import { FakeExecProcesses, pod, runningContainer, START, streamingWorld } from '../support/streaming.js';

const app = runningContainer('app', { stdin: true });
const execPayload = (sessionId: string): ExecSessionPayload => ({
  kind: 'exec',
  sessionId,
  correlationId: 'req-exec-1',
  containerId: app.ref.id,
  cmd: ['sh', '-c', 'env; cat /etc/secret'],
  tty: true,
  stdin: true,
  stdout: true,
  stderr: false,
  auditRequestId: 'audit-7',
});
const forward: PortForwardSessionPayload = {
  kind: 'portforward',
  sessionId: 'pf-1',
  correlationId: 'req-pf-1',
  sandboxId: pod.id,
  ports: [8080],
  netnsPath: '/run/netns/x',
  hostNetwork: false,
};

async function sessionEvents(w: Awaited<ReturnType<typeof streamingWorld>>, stream: string): Promise<LedgerEvent[]> {
  return (await w.log.readStream(stream)).filter((e) => /^(Exec|Attach|PortForward)(Started|Ended)$/.test(e.type));
}

describe('recording a session', () => {
  it('records start and end in the container stream with the Exec call correlation id, the start as the cause', async () => {
    const w = await streamingWorld(app.events);
    await recordSessionStarted(w.records, execPayload('s1'), START);
    assert.equal(w.ledger.projections.sessions.get('s1')?.kind, 'exec');
    const ended = await recordSessionEnded(w.records, {
      sessionId: 's1',
      reason: 'exited',
      exitCode: 3,
      bytes: { in: 12, out: 4096 },
      endedAt: time(12.5),
    });
    assert.equal(ended, true);
    const [started, end] = await sessionEvents(w, containerStream(app.ref.id));
    assert.equal(started?.type, 'ExecStarted');
    assert.deepEqual(started?.data, {
      sessionId: 's1',
      cmd: ['sh', '-c', 'env; cat /etc/secret'],
      tty: true,
      streams: { stdin: true, stdout: true, stderr: false },
      transport: 'spdy',
      protocol: 'v5.channel.k8s.io',
      startedAt: time(10),
      auditRequestId: 'audit-7',
    });
    assert.equal(end?.type, 'ExecEnded');
    assert.deepEqual(end?.data, {
      sessionId: 's1',
      reason: 'exited',
      exitCode: 3,
      bytesIn: 12,
      bytesOut: 4096,
      endedAt: time(12.5),
      durationMs: 2500,
    });
    assert.deepEqual(
      [started?.correlationId, end?.correlationId, end?.causationId],
      ['req-exec-1', 'req-exec-1', started?.id],
    );
    assert.equal(w.ledger.projections.sessions.size, 0, 'no longer open');
  });

  it('records an end once, however many enders race', async () => {
    const w = await streamingWorld(app.events);
    await recordSessionStarted(w.records, execPayload('s1'), START);
    const finish = { sessionId: 's1', reason: 'client-gone' as const, bytes: { in: 0, out: 0 }, endedAt: time(11) };
    const results = await Promise.all([
      recordSessionEnded(w.records, finish),
      recordSessionEnded(w.records, { ...finish, reason: 'container-exited' }),
      recordSessionEnded(w.records, finish),
    ]);
    assert.deepEqual(results.filter(Boolean).length, 1);
    assert.deepEqual(
      (await sessionEvents(w, containerStream(app.ref.id))).map((e) => e.type),
      ['ExecStarted', 'ExecEnded'],
    );
  });

  it('records nothing for a session that never started', async () => {
    const w = await streamingWorld(app.events);
    const head = w.head();
    assert.equal(await recordSessionEnded(w.records, { sessionId: 'nope', reason: 'error', endedAt: time(11) }), false);
    assert.equal(w.head(), head);
  });

  it('refuses to start on a container that stopped since the URL was handed out, writing nothing', async () => {
    const w = await streamingWorld(app.events, [[streams.container(app.ref), ev.containerExited(0)]]);
    const head = w.head();
    await assert.rejects(recordSessionStarted(w.records, execPayload('s1'), START), FailedPreconditionError);
    assert.equal(w.head(), head);
  });

  it('still records the end after the container was removed', async () => {
    const w = await streamingWorld(app.events);
    await recordSessionStarted(w.records, execPayload('s1'), START);
    await w.ledger.append(streams.container(app.ref), 'any', [ev.containerExited(137), ev.containerRemoved(app.ref)]);
    assert.equal(
      await recordSessionEnded(w.records, { sessionId: 's1', reason: 'container-exited', endedAt: time(20) }),
      true,
    );
    const events = await w.log.readStream(containerStream(app.ref.id));
    assert.deepEqual(
      events.slice(-3).map((e) => e.type),
      ['ContainerExited', 'ContainerRemoved', 'ExecEnded'],
    );
  });

  it('records a port forward in the sandbox stream with bytes per port', async () => {
    const w = await streamingWorld();
    await recordSessionStarted(w.records, forward, { ...START, protocol: 'portforward.k8s.io' });
    const port = { port: 8080, connections: 2, errors: 1, bytesIn: 100, bytesOut: 5000 };
    await recordSessionEnded(w.records, {
      sessionId: 'pf-1',
      reason: 'client-gone',
      ports: [port],
      bytes: { in: 100, out: 5000 },
      endedAt: time(11),
    });
    const [started, ended] = await sessionEvents(w, sandboxStream(pod.id));
    assert.deepEqual(started?.type === 'PortForwardStarted' && started.data.ports, [8080]);
    assert.deepEqual(ended?.type === 'PortForwardEnded' && ended.data.ports, [port]);
    assert.equal(w.ledger.projections.sandboxes.get(pod.id)?.version, 4, 'the sandbox record follows its stream');
  });

  it('keeps StopContainer working while a session ends at the same moment', async () => {
    const w = await streamingWorld(app.events);
    const tasks = new FakeTasks();
    tasks.running.set(app.ref.id, 4242);
    const lifecycle: LifecycleDeps = {
      ledger: w.ledger,
      locks: w.records.locks,
      tasks,
      logs: new FakeLogs(),
      files: new FakeFiles(),
      runtime: new FakeRuntime(),
      oomed: new Set(),
      tasksDeleted: new Set(),
      snapshotter: 'overlayfs',
    };
    await recordSessionStarted(w.records, execPayload('s1'), START);
    await Promise.all([
      stopContainer(lifecycle, { containerId: app.ref.id, correlationId: 'req-stop', now: time(30), timeoutMs: 0 }),
      recordSessionEnded(w.records, { sessionId: 's1', reason: 'container-exited', endedAt: time(30) }),
    ]);
    const types = (await w.log.readStream(containerStream(app.ref.id))).map((e) => e.type);
    assert.deepEqual(types.slice(-3).sort(), ['ContainerExited', 'ContainerStopped', 'ExecEnded']);
    assert.equal(w.ledger.projections.containers.get(app.ref.id)?.state, 'EXITED');
  });
});

describe('startup recovery of sessions', () => {
  it('ends every session left open with service-restarted, kills its exec process, and counts no bytes', async () => {
    const w = await streamingWorld(app.events);
    await recordSessionStarted(w.records, execPayload('s1'), START);
    await recordSessionStarted(w.records, execPayload('s2'), START);
    await recordSessionStarted(w.records, forward, START);
    const execs = new FakeExecProcesses();
    execs.failFor.add('s2');
    const open = [...w.ledger.projections.sessions.values()];
    const ended = await endSessionsLeftOpen({ ...w.records, execs, now: () => time(60) }, open);
    assert.deepEqual(execs.killed, [{ containerId: app.ref.id, execId: 's1' }]);
    assert.deepEqual(
      ended.map((e) => [e.sessionId, e.recorded, e.killError ?? '']),
      [
        ['s1', true, ''],
        ['s2', true, 'containerd is unavailable'],
        ['pf-1', true, ''],
      ],
    );
    assert.equal(w.ledger.projections.sessions.size, 0);
    const ends = [
      ...(await sessionEvents(w, containerStream(app.ref.id))),
      ...(await sessionEvents(w, sandboxStream(pod.id))),
    ].filter((e) => e.type.endsWith('Ended'));
    for (const e of ends) {
      const d = e.data as { reason: string; bytesIn?: number; error?: string };
      assert.equal(d.reason, 'service-restarted');
      assert.equal(d.bytesIn, undefined, 'bytes counted by a dead process are unknown, not 0');
      assert.match(d.error ?? '', /the service restarted while the session was open/);
    }
    assert.match(JSON.stringify(ends.map((e) => e.data)), /could not be killed: containerd is unavailable/);
    const again = await endSessionsLeftOpen({ ...w.records, now: () => time(61) }, open);
    assert.equal(again.length, 3);
    assert.equal((await sessionEvents(w, containerStream(app.ref.id))).length, 4, 'a second run writes nothing');
  });
});
