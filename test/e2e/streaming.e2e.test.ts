import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { jsonAny, parseJsonAny, type WireAny } from '../../src/adapters/containerd/containerd-wire.js';
import { OCI_PROCESS_TYPE_URL } from '../../src/adapters/containerd/exec-process.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { decodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { runSpdyClient, startSpdyClient } from '../support/spdy-go-client.js';
import { until } from '../support/until.js';

/*
 * Exec through the whole service, as kubectl and crictl do it: the CRI Exec call answers
 * a URL on the service's streaming server, the SPDY client (spdystream, the library under
 * client-go) opens it, a containerd exec process runs in the real container, the exit
 * code comes back on the error stream as kubelet formats it, and the session is on the
 * record (ExecStarted, ExecEnded with how it ended and the bytes, never the bytes themselves).
 */

describe('exec sessions end to end, over SPDY', () => {
  let h: CriHarness;
  let containerId = '';
  const pod = {
    metadata: { name: 'sessions', uid: 'uid-sessions', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  const execUrl = async (cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}): Promise<string> =>
    (
      await h.call<{ url: string }>('exec', {
        containerId,
        cmd,
        tty: o.tty ?? false,
        stdin: o.stdin ?? false,
        stdout: true,
        stderr: !o.tty,
      })
    ).url;
  const sessionEvents = async (): Promise<LedgerEvent[]> => {
    const client = LedgerClient.connect(h.socket);
    const out: LedgerEvent[] = [];
    try {
      for await (const r of client.readEvents({ streams: [`container-${containerId}`] })) out.push(decodeEvent(r.json));
    } finally {
      client.close();
    }
    return out.filter((e) => e.type === 'ExecStarted' || e.type === 'ExecEnded');
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-sessions-' });
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod });
    containerId = (
      await h.call<{ containerId: string }>('createContainer', {
        podSandboxId,
        sandboxConfig: pod,
        config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
      })
    ).containerId;
    await h.call('startContainer', { containerId });
  });
  after(() => h?.cleanup());

  it('runs a command, returns its output and its non-zero exit code as kubelet does, and records both ends', async () => {
    const url = await execUrl(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{22,}$/);
    const result = await runSpdyClient(['-url', url, '-mode', 'exec']);
    assert.equal(result.stdout.toString(), 'out\n');
    assert.match(result.stderr, /err/);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.status, /"reason":"NonZeroExitCode".*"message":"3"/);
    await until('ExecEnded', async () => (await sessionEvents()).some((e) => e.type === 'ExecEnded'));
    const [start, end] = await sessionEvents();
    assert.equal(start?.type, 'ExecStarted');
    assert.deepEqual(start?.type === 'ExecStarted' && start.data.cmd, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(end?.type === 'ExecEnded' && end.data.reason, 'exited');
    assert.equal(end?.type === 'ExecEnded' && end.data.exitCode, 3);
    assert.ok(end?.type === 'ExecEnded' && (end.data.bytesOut ?? 0) >= 8, JSON.stringify(end?.data));
    assert.ok(!JSON.stringify(end).includes('out\\n'), 'the bytes of the session are not recorded');
  });

  it('forwards stdin to the process and closes it on the client’s end', async () => {
    const result = await runSpdyClient(
      ['-url', await execUrl(['cat'], { stdin: true }), '-stdin'],
      'hello through stdin',
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'hello through stdin');
  });

  it('gives a tty the size the client sends', async () => {
    const url = await execUrl(['sh', '-c', 'sleep 1; stty size'], { tty: true });
    const result = await runSpdyClient(['-url', url, '-tty', '-stderr=false', '-resize', '100x40']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.toString(), /40 100/);
  });

  it('kills the process of a client that drops an exec -it session, and records client-gone', async () => {
    const before = (await sessionEvents()).length;
    const url = await execUrl(['sh', '-c', 'echo started; sleep 600'], { tty: true, stdin: true });
    const run = startSpdyClient(['-url', url, '-tty', '-stderr=false', '-stdin']);
    await until('the session to start', async () => (await sessionEvents()).length > before);
    run.child.kill('SIGKILL');
    await run.result;
    await until(
      'ExecEnded',
      async () => (await sessionEvents()).slice(before).some((e) => e.type === 'ExecEnded'),
      30_000,
    );
    const end = (await sessionEvents()).slice(before).find((e) => e.type === 'ExecEnded');
    assert.equal(end?.type === 'ExecEnded' && end.data.reason, 'client-gone');
    // The exec's sleep is gone: only the container's own sleep is left.
    const ps = await h.call<{ stdout: Buffer; exitCode: number }>('execSync', {
      containerId,
      cmd: ['ps'],
      timeout: 10,
    });
    assert.doesNotMatch(Buffer.from(ps.stdout).toString(), /sleep 600/);
  });

  /** Whether `path` exists in the container (an ExecSync of `test -e`). */
  const existsInContainer = async (path: string): Promise<boolean> =>
    (await h.call<{ exitCode: number }>('execSync', { containerId, cmd: ['test', '-e', path], timeout: 10 }))
      .exitCode === 0;
  /** The session of the last ExecStarted since `before` ended client-gone, and nothing of its process is left. */
  const endedClientGoneLeavingNothing = async (before: number, sleeper: RegExp): Promise<void> => {
    await until(
      'ExecEnded',
      async () => (await sessionEvents()).slice(before).some((e) => e.type === 'ExecEnded'),
      30_000,
    );
    const [start, end] = (await sessionEvents()).slice(before);
    assert.equal(start?.type, 'ExecStarted');
    assert.equal(end?.type === 'ExecEnded' && end.data.reason, 'client-gone');
    const ps = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['ps'], timeout: 10 });
    assert.doesNotMatch(Buffer.from(ps.stdout).toString(), sleeper);
    const execId = start?.type === 'ExecStarted' ? start.data.sessionId : '';
    await until('the exec process deleted from the shim', async () => {
      const process = await unaryCall(h.api.tasks, 'Get', { container_id: containerId, exec_id: execId }).then(
        () => true,
        () => false,
      );
      return !process && !existsSync(join(h.root, 'state', 'exec', execId));
    });
  };

  it('never runs a tty process for a client that leaves before opening its streams, and records client-gone', async () => {
    const before = (await sessionEvents()).length;
    // A tty process is made while the client opens its streams, and waits for them; this client never opens any.
    const url = await execUrl(['sh', '-c', 'touch /tmp/ran-601; sleep 601'], { tty: true });
    assert.equal((await runSpdyClient(['-url', url, '-mode', 'exec', '-tty', '-abandon'])).code, 0);
    await endedClientGoneLeavingNothing(before, /sleep 601/);
    assert.equal(await existsInContainer('/tmp/ran-601'), false);
  });

  it('runs a process without a tty while the client opens its streams, and kills it when the client leaves before', async () => {
    const before = (await sessionEvents()).length;
    const url = await execUrl(['sh', '-c', 'touch /tmp/ran-603; sleep 603']);
    // The client upgrades, opens no stream, and leaves when its stdin ends.
    const client = startSpdyClient(['-url', url, '-mode', 'exec', '-stall']);
    await until('the process runs before any stream is open', () => existsInContainer('/tmp/ran-603'), 30_000);
    client.child.stdin?.end();
    assert.equal((await client.result).code, 0);
    await endedClientGoneLeavingNothing(before, /sleep 603/);
  });

  it('removes at start what an earlier run left of an exec: its process in the shim and its FIFO directory', async () => {
    // What a service killed between tasks.Exec and tasks.Start leaves: a process made in
    // the shim and never started, and its directory naming the container.
    const execId = 'left-by-a-killed-service';
    const dir = join(h.root, 'state', 'exec', execId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'container'), containerId);
    const record = await unaryCall<{ container: { spec: WireAny } }>(h.api.containers, 'Get', { id: containerId });
    const own = parseJsonAny<{ process: object }>(record.container.spec).process;
    const ids = { container_id: containerId, exec_id: execId };
    await unaryCall(h.api.tasks, 'Exec', {
      ...ids,
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      spec: jsonAny(OCI_PROCESS_TYPE_URL, { ...own, args: ['sleep', '602'] }),
    });
    const inShim = () =>
      unaryCall(h.api.tasks, 'Get', ids).then(
        () => true,
        () => false,
      );
    assert.ok(await inShim(), 'the leftover process is in the shim');
    await h.restart();
    await until('the leftover swept', async () => !existsSync(dir) && !(await inShim()), 30_000);
    // The container and its sessions go on as before.
    const url = await execUrl(['echo', 'after']);
    assert.equal((await runSpdyClient(['-url', url, '-mode', 'exec'])).stdout.toString(), 'after\n');
  });

  it('refuses a URL used twice', async () => {
    const url = await execUrl(['true']);
    assert.equal((await runSpdyClient(['-url', url, '-mode', 'exec'])).code, 0);
    const again = await runSpdyClient(['-url', url, '-mode', 'exec']);
    assert.notEqual(again.code, 0);
  });
});
