import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type CriHarness, ledgerHead, startCriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';
import { ofSession, streamEvents } from '../support/session-events.js';
import { runSpdyClient, startSpdyClient } from '../support/spdy-go-client.js';
import { until } from '../support/until.js';
import { openWsSession } from '../support/ws-stream-client.js';

/*
 * The edges of streaming sessions through the whole service: a URL that expired unused
 * (the service's `streaming.tokenTtl`, set short here through its environment), many
 * sessions at once on one container, a WebSocket client that drops an exec, a service
 * stopped (SIGTERM) under open sessions, and `streaming.idleTimeout`.
 */

const TOKEN_TTL_MS = 5_000;

describe('streaming sessions at their limits, end to end', () => {
  let h: CriHarness;
  let containerId = '';
  let podId = '';
  const pod = {
    metadata: { name: 'limits', uid: 'uid-limits', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  const execUrl = async (cmd: string[], stdin = false) =>
    (await h.call<{ url: string }>('exec', { containerId, cmd, stdin, stdout: true, stderr: true })).url;
  const execEvents = () => streamEvents(h.socket, `container-${containerId}`, ['ExecStarted', 'ExecEnded']);

  before(async () => {
    h = await startCriHarness({
      prefix: 'cri-ledger-e2e-stream-limits-',
      env: { CRI_LEDGER_STREAMING_TOKEN_TTL: `${TOKEN_TTL_MS / 1000}s` },
    });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    containerId = (
      await h.call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: pod,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
      })
    ).containerId;
    await h.call('startContainer', { containerId });
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('answers 404 to a URL that expired unused, over SPDY and WebSocket, and records nothing', async () => {
    const spdy = await execUrl(['echo', 'late']);
    const ws = await execUrl(['echo', 'late']);
    const head = await ledgerHead(h.socket);
    await new Promise((r) => setTimeout(r, TOKEN_TTL_MS + 500));
    const result = await runSpdyClient(['-url', spdy]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /404: 404 page not found/);
    await assert.rejects(openWsSession(ws, ['v5.channel.k8s.io']), /^Error: 404: 404 page not found/);
    assert.equal(await ledgerHead(h.socket), head, 'an expired URL writes no event');
    // A fresh URL for the same command still works.
    const fresh = await runSpdyClient(['-url', await execUrl(['echo', 'in time'])]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(fresh.stdout.toString(), 'in time\n');
  });

  it('runs 20 execs at once in one container, each with its own bytes, each recorded once', async () => {
    const known = new Set((await execEvents()).map((e) => (e.data as { sessionId: string }).sessionId));
    const inputs = Array.from({ length: 20 }, (_, i) => randomBytes(32 * 1024 + i));
    const results = await Promise.all(
      inputs.map(async (input, i) =>
        runSpdyClient(['-url', await execUrl(['sh', '-c', `cat; exit ${i}`], true), '-stdin'], input),
      ),
    );
    results.forEach((result, i) => {
      assert.equal(result.code, i, result.stderr);
      assert.ok(result.stdout.equals(inputs[i]!), `session ${i} got its own bytes back`);
    });
    await until('20 ExecEnded', async () => {
      const ended = (await execEvents()).filter((e) => e.type === 'ExecEnded');
      return ended.filter((e) => !known.has((e.data as { sessionId: string }).sessionId)).length === 20;
    });
    const events = (await execEvents()).filter((e) => !known.has((e.data as { sessionId: string }).sessionId));
    const sessions = new Set(events.map((e) => (e.data as { sessionId: string }).sessionId));
    assert.equal(sessions.size, 20);
    const exitCodes: number[] = [];
    for (const id of sessions) {
      const [started, ended, ...rest] = ofSession(events, id);
      assert.equal(started?.type, 'ExecStarted');
      assert.equal(ended?.type, 'ExecEnded');
      assert.deepEqual(rest, [], 'one start and one end per session');
      if (ended?.type !== 'ExecEnded' || started?.type !== 'ExecStarted') continue;
      const code = Number(started.data.cmd[2]!.replace('cat; exit ', ''));
      assert.equal(ended.data.exitCode, code);
      assert.equal(ended.data.bytesIn, inputs[code]!.length);
      assert.equal(ended.data.bytesOut, inputs[code]!.length);
      exitCodes.push(code);
    }
    assert.deepEqual(
      exitCodes.sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i),
    );
  });

  it('kills the process of a WebSocket client that drops its exec, and records client-gone', async () => {
    const session = await openWsSession(await execUrl(['sh', '-c', 'echo up; exec sleep 987']), ['v5.channel.k8s.io']);
    await until('the process to run', async () => session.text(1) === 'up\n');
    session.ws.terminate();
    await until('ExecEnded client-gone', async () => {
      const events = await execEvents();
      const start = events.filter((e) => e.type === 'ExecStarted').at(-1)!;
      const ended = ofSession(events, (start.data as { sessionId: string }).sessionId)[1];
      return ended?.type === 'ExecEnded' && ended.data.reason === 'client-gone';
    });
    const ps = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['ps'], timeout: 10 });
    assert.doesNotMatch(Buffer.from(ps.stdout).toString(), /sleep 987/);
  });

  // These two restart the service: they come last.
  it('ends every open session with shutdown when the service is stopped, and kills the exec', async () => {
    const known = (await execEvents()).length;
    const exec = startSpdyClient(['-url', await execUrl(['sh', '-c', 'echo up; exec sleep 654'], true), '-stdin']);
    const attachUrl = (await h.call<{ url: string }>('attach', { containerId, stdout: true, stderr: true })).url;
    const attach = startSpdyClient(['-url', attachUrl, '-mode', 'attach']);
    const forwardUrl = (await h.call<{ url: string }>('portForward', { podSandboxId: podId, port: [9] })).url;
    const forward = startSpdyClient([
      '-url',
      forwardUrl,
      '-mode',
      'portforward',
      '-requests',
      '0',
      '-hold-ms',
      '30000',
    ]);
    const sandboxEvents = () => streamEvents(h.socket, `sandbox-${podId}`, ['PortForwardStarted', 'PortForwardEnded']);
    const attachEvents = () => streamEvents(h.socket, `container-${containerId}`, ['AttachStarted', 'AttachEnded']);
    await until('the three sessions to start', async () => {
      const execs = (await execEvents()).slice(known);
      return (
        execs.some((e) => e.type === 'ExecStarted') &&
        (await attachEvents()).some((e) => e.type === 'AttachStarted') &&
        (await sandboxEvents()).some((e) => e.type === 'PortForwardStarted')
      );
    });
    await h.restart();
    // Every client is let go: the connections closed with the service.
    await Promise.all([exec.result, attach.result, forward.result]);
    const ends = [...(await execEvents()).slice(known), ...(await attachEvents()), ...(await sandboxEvents())].filter(
      (e) => e.type === 'ExecEnded' || e.type === 'AttachEnded' || e.type === 'PortForwardEnded',
    );
    assert.deepEqual(
      ends.map((e) => [e.type, (e.data as { reason: string }).reason]),
      [
        ['ExecEnded', 'shutdown'],
        ['AttachEnded', 'shutdown'],
        ['PortForwardEnded', 'shutdown'],
      ],
    );
    const ps = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['ps'], timeout: 10 });
    assert.doesNotMatch(Buffer.from(ps.stdout).toString(), /sleep 654/);
  });

  it('ends a quiet exec at streaming.idleTimeout, kills its process, and records idle-timeout', async () => {
    await h.restart(undefined, { CRI_LEDGER_STREAMING_IDLE_TIMEOUT: '2s' });
    const known = (await execEvents()).length;
    const started = Date.now();
    const result = await runSpdyClient(['-url', await execUrl(['sleep', '321'])]);
    assert.notEqual(result.code, 0);
    await until('ExecEnded', async () => (await execEvents()).length >= known + 2);
    const ended = (await execEvents()).slice(known).find((e) => e.type === 'ExecEnded');
    assert.equal(ended?.type === 'ExecEnded' && ended.data.reason, 'idle-timeout');
    assert.ok(Date.now() - started >= 2_000, 'not before the idle timeout');
    const ps = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['ps'], timeout: 10 });
    assert.doesNotMatch(Buffer.from(ps.stdout).toString(), /sleep 321/);
  });
});
