import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';
import { ofSession, streamEvents } from '../support/session-events.js';
import { runSpdyClient, type SpdyClientRun, startSpdyClient } from '../support/spdy-go-client.js';
import { until } from '../support/until.js';

/*
 * Attach through the whole service, as `kubectl attach` and `crictl attach` do it: CRI
 * Attach answers a URL, the SPDY client (spdystream, under client-go) opens it, and the
 * container's own stdio is bridged: its output reaches the client while the CRI log still
 * gets every byte, typed input reaches its stdin, and each session is on the record
 * (AttachStarted, AttachEnded with how it ended).
 */

const CRI_LOG_LINE = /^\S+ (stdout|stderr) [FP] (.*)$/;

describe('attach sessions end to end, over SPDY', () => {
  let h: CriHarness;
  let logDir = '';
  let podId = '';
  const pod = {
    metadata: { name: 'attach', uid: 'uid-attach', namespace: 'default', attempt: 0 },
    logDirectory: '',
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  const runContainer = async (
    name: string,
    cmd: string[],
    io: { stdin?: boolean; stdinOnce?: boolean; tty?: boolean },
  ) => {
    const { containerId } = await h.call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: pod,
      config: {
        metadata: { name, attempt: 0 },
        image: { image: 'busybox' },
        command: cmd,
        logPath: `${name}.log`,
        ...io,
      },
    });
    await h.call('startContainer', { containerId });
    return containerId;
  };
  const attachUrl = async (containerId: string, o: { stdin?: boolean; tty?: boolean }) =>
    (
      await h.call<{ url: string }>('attach', {
        containerId,
        stdin: o.stdin ?? false,
        tty: o.tty ?? false,
        stdout: true,
        stderr: !o.tty,
      })
    ).url;
  const attachEvents = (containerId: string) =>
    streamEvents(h.socket, `container-${containerId}`, ['AttachStarted', 'AttachEnded']);
  /** The AttachStarted and AttachEnded of the session started after `known` events, once it has ended. */
  const endedSession = async (containerId: string, known: number): Promise<[LedgerEvent, LedgerEvent]> => {
    await until('AttachEnded', async () => (await attachEvents(containerId)).length >= known + 2, 30_000);
    const events = await attachEvents(containerId);
    const start = events[known]!;
    const [started, ended] = ofSession(events, (start.data as { sessionId: string }).sessionId);
    assert.equal(started?.type, 'AttachStarted');
    assert.equal(ended?.type, 'AttachEnded');
    return [started!, ended!];
  };
  /** The CRI log's records of one stream, as text lines. */
  const logLines = async (name: string, stream: 'stdout' | 'stderr'): Promise<string[]> =>
    (await readFile(join(logDir, `${name}.log`), 'utf8').catch(() => ''))
      .split('\n')
      .map((line) => CRI_LOG_LINE.exec(line))
      .filter((m) => m?.[1] === stream)
      .map((m) => m![2]!);
  const state = async (containerId: string) =>
    (await h.call<{ status: { state: string } }>('containerStatus', { containerId })).status.state;
  const stdoutOf = (run: SpdyClientRun, chunks: Buffer[]) =>
    run.child.stdout!.on('data', (c: Buffer) => chunks.push(c));

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-attach-' });
    logDir = join(h.root, 'pod-logs');
    await mkdir(logDir);
    pod.logDirectory = logDir;
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('streams a container’s stdout and stderr to the client while its CRI log keeps them, and records a dropped client', async () => {
    const id = await runContainer(
      'ticker',
      ['sh', '-c', 'i=0; while true; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.1; done'],
      {},
    );
    const run = startSpdyClient(['-url', await attachUrl(id, {}), '-mode', 'attach']);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdoutOf(run, out);
    run.child.stderr!.on('data', (c: Buffer) => err.push(c));
    await until('five ticks and tocks at the client', async () => {
      const ticks =
        Buffer.concat(out)
          .toString()
          .match(/tick-\d+\n/g) ?? [];
      const tocks =
        Buffer.concat(err)
          .toString()
          .match(/tock-\d+\n/g) ?? [];
      return ticks.length >= 5 && tocks.length >= 5;
    });
    run.child.kill('SIGKILL');
    await run.result;
    const [started, ended] = await endedSession(id, 0);
    assert.deepEqual(started.type === 'AttachStarted' && started.data.streams, {
      stdin: false,
      stdout: true,
      stderr: true,
    });
    assert.equal(started.type === 'AttachStarted' && started.data.transport, 'spdy');
    assert.equal(started.type === 'AttachStarted' && started.data.protocol, 'v5.channel.k8s.io');
    assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'client-gone');
    assert.ok(ended.type === 'AttachEnded' && (ended.data.bytesOut ?? 0) >= 40, JSON.stringify(ended.data));
    // The log kept every line the client saw, each on its own stream, and goes on after the client left.
    const seen = Buffer.concat(out)
      .toString()
      .match(/tick-\d+/g)!;
    const seenErr = Buffer.concat(err)
      .toString()
      .match(/tock-\d+/g)!;
    const last = Number(seen.at(-1)!.slice(5));
    await until('the log to move past the client', async () =>
      (await logLines('ticker', 'stdout')).includes(`tick-${last + 5}`),
    );
    const logged = await logLines('ticker', 'stdout');
    for (const line of seen) assert.ok(logged.includes(line), `${line} is in the log`);
    const loggedErr = await logLines('ticker', 'stderr');
    for (const line of seenErr) assert.ok(loggedErr.includes(line), `${line} is in the log's stderr`);
    assert.equal(await state(id), 'CONTAINER_RUNNING', 'a dropped attach leaves the container running');
  });

  it('carries typed input to a tty container’s shell and its output back; ending stdin detaches, the container goes on', async () => {
    const id = await runContainer('shell', ['sh'], { stdin: true, tty: true });
    const sessions: Array<[string, string]> = [
      ['echo marker-$((6*7))', 'marker-42'],
      ['echo again-$((1+1))', 'again-2'],
    ];
    for (const [attempt, [typed, expected]] of sessions.entries()) {
      const run = startSpdyClient([
        '-url',
        await attachUrl(id, { stdin: true, tty: true }),
        '-mode',
        'attach',
        '-tty',
        '-stderr=false',
        '-stdin',
        '-resize',
        '90x30',
      ]);
      const out: Buffer[] = [];
      stdoutOf(run, out);
      run.child.stdin!.write(`${typed}\n`);
      await until(`${expected} at the client`, async () => Buffer.concat(out).toString().includes(expected));
      run.child.stdin!.end();
      const result = await run.result;
      assert.equal(result.code, 0, result.stderr);
      const [started, ended] = await endedSession(id, attempt * 2);
      assert.equal(started.type === 'AttachStarted' && started.data.tty, true);
      assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'client-gone');
      assert.ok(ended.type === 'AttachEnded' && ended.data.bytesIn === typed.length + 1, JSON.stringify(ended.data));
    }
    // A tty's stdin is never closed by a detach (kubectl#452): the second attach was answered.
    assert.equal(await state(id), 'CONTAINER_RUNNING');
    const logged = (await logLines('shell', 'stdout')).join('\n');
    assert.match(logged, /marker-42/);
    assert.match(logged, /again-2/);
  });

  it('leaves a tty container’s stdin open when an attach -it client is killed', async () => {
    const id = await runContainer('dropped', ['sh'], { stdin: true, tty: true });
    const attachIt = async (typed: string, expected: string) => {
      const url = await attachUrl(id, { stdin: true, tty: true });
      const run = startSpdyClient(['-url', url, '-mode', 'attach', '-tty', '-stderr=false', '-stdin']);
      const out: Buffer[] = [];
      stdoutOf(run, out);
      run.child.stdin!.write(`${typed}\n`);
      await until(`${expected} at the client`, async () => Buffer.concat(out).toString().includes(expected));
      return run;
    };
    const dropped = await attachIt('echo first-$((2+2))', 'first-4');
    dropped.child.kill('SIGKILL');
    await dropped.result;
    const [, ended] = await endedSession(id, 0);
    assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'client-gone');
    const next = await attachIt('echo second-$((3+3))', 'second-6');
    next.child.stdin!.end();
    assert.equal((await next.result).code, 0);
    assert.equal(await state(id), 'CONTAINER_RUNNING');
  });

  it('keeps a container’s stdin open across attaches when it was created without stdin_once', async () => {
    const id = await runContainer('reader', ['sh', '-c', 'while read l; do echo got-$l; done; echo stdin-ended'], {
      stdin: true,
    });
    for (const [attempt, word] of ['first', 'second'].entries()) {
      const run = startSpdyClient(['-url', await attachUrl(id, { stdin: true }), '-mode', 'attach', '-stdin']);
      const out: Buffer[] = [];
      stdoutOf(run, out);
      run.child.stdin!.write(`${word}\n`);
      await until(`got-${word}`, async () => Buffer.concat(out).toString().includes(`got-${word}\n`));
      run.child.stdin!.end();
      assert.equal((await run.result).code, 0);
      const [, ended] = await endedSession(id, attempt * 2);
      assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'client-gone');
    }
    assert.equal(await state(id), 'CONTAINER_RUNNING');
    assert.doesNotMatch((await logLines('reader', 'stdout')).join('\n'), /stdin-ended/);
  });

  it('honours stdin_once: the client’s end closes the container’s stdin, and the attach lasts until its output ends', async () => {
    const id = await runContainer('once', ['sh', '-c', 'cat; echo done-reading; exit 7'], {
      stdin: true,
      stdinOnce: true,
    });
    const result = await runSpdyClient(
      ['-url', await attachUrl(id, { stdin: true }), '-mode', 'attach', '-stdin'],
      'line one\nline two\n',
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'line one\nline two\ndone-reading\n');
    assert.match(result.status, /"status":"Success"/);
    const [, ended] = await endedSession(id, 0);
    assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'container-exited');
    assert.equal(ended.type === 'AttachEnded' && ended.data.exitCode, 7, 'the container’s exit code is recorded');
    assert.equal(ended.type === 'AttachEnded' && ended.data.bytesIn, 18);
    await until('the container to exit', async () => (await state(id)) === 'CONTAINER_EXITED');
    assert.deepEqual(await logLines('once', 'stdout'), ['line one', 'line two', 'done-reading']);
    // Its stdin is gone for good: a later Attach is refused before any URL (not running).
    await assert.rejects(attachUrl(id, { stdin: true }), /not RUNNING/);
  });
});
