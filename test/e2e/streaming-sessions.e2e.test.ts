import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { runCli } from '../support/cli.js';
import { type CriHarness, ledgerHead, startCriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';
import { streamEvents } from '../support/session-events.js';
import { runSpdyClient } from '../support/spdy-go-client.js';

/*
 * Exec, Attach and PortForward over the CRI socket, on a private containerd: a valid
 * request answers a streaming URL; every bad one is refused with its code, naming the
 * field or the state, before anything happens (nothing registered, no event written).
 * A URL whose container or pod went away before the client came is refused then, and
 * records nothing either. The sessions themselves are in streaming*.e2e.test.ts.
 */

describe('Exec, Attach and PortForward over the CRI socket', () => {
  let h: CriHarness;
  let podId = '';
  let stoppedPodId = '';
  let running = '';
  let created = '';
  const podConfig = (name: string) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  });
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const create = async (name: string) =>
    (
      await call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: podConfig('stream'),
        config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
      })
    ).containerId;
  /** The log's head, through the Ledger API in this process (a CLI per call costs seconds on a loaded machine). */
  const head = () => ledgerHead(h.socket);
  /** Calls `method` and expects the status `code` with a message matching `pattern`, and no event written. */
  const refused = async (method: string, request: object, code: Status, pattern: RegExp) => {
    const before = await head();
    await assert.rejects(call(method, request), (e: ServiceError) => {
      assert.equal(Status[e.code], Status[code], e.details);
      assert.match(e.details, pattern);
      return true;
    });
    assert.equal(await head(), before, `${method} wrote nothing`);
  };
  const url = async (method: string, request: object): Promise<string> =>
    (await call<{ url: string }>(method, request)).url;

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-stream-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig('stream') })).podSandboxId;
    stoppedPodId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig('stopped') }))
      .podSandboxId;
    await call('stopPodSandbox', { podSandboxId: stoppedPodId });
    running = await create('runner');
    await call('startContainer', { containerId: running });
    created = await create('idle');
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('answers Exec, Attach and PortForward with URLs on the streaming server, one kind each', async () => {
    const exec = await url('exec', { containerId: running, cmd: ['echo', 'hi'], stdout: true });
    const attach = await url('attach', { containerId: running, stdout: true, stderr: true });
    const forward = await url('portForward', { podSandboxId: podId, port: [8080] });
    assert.match(exec, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{22,}$/);
    assert.match(attach, /^http:\/\/127\.0\.0\.1:\d+\/attach\//);
    assert.match(forward, /^http:\/\/127\.0\.0\.1:\d+\/portforward\//);
  });

  it('refuses an unknown container with NOT_FOUND', () =>
    refused('exec', { containerId: 'f'.repeat(64), cmd: ['ls'], stdout: true }, Status.NOT_FOUND, /not found/));

  it('refuses Attach to an unknown container and PortForward to an unknown sandbox with NOT_FOUND', async () => {
    await refused('attach', { containerId: 'f'.repeat(64), stdout: true }, Status.NOT_FOUND, /not found/);
    await refused('portForward', { podSandboxId: 'e'.repeat(64), port: [80] }, Status.NOT_FOUND, /not found/);
  });

  it('refuses a container that is not running with FAILED_PRECONDITION naming its state', async () => {
    await refused('exec', { containerId: created, cmd: ['ls'], stdout: true }, Status.FAILED_PRECONDITION, /CREATED/);
    await refused('attach', { containerId: created, stdout: true }, Status.FAILED_PRECONDITION, /CREATED/);
  });

  it('names the field of an empty id, an empty argv[0] and port 0', async () => {
    await refused('exec', { containerId: '', cmd: ['ls'], stdout: true }, Status.INVALID_ARGUMENT, /^container_id: /);
    await refused('attach', { containerId: '', stdout: true }, Status.INVALID_ARGUMENT, /^container_id: /);
    await refused(
      'exec',
      { containerId: running, cmd: ['', 'x'], stdout: true },
      Status.INVALID_ARGUMENT,
      /^cmd\[0\]: /,
    );
    await refused('portForward', { podSandboxId: '', port: [80] }, Status.INVALID_ARGUMENT, /^pod_sandbox_id: /);
    await refused('portForward', { podSandboxId: podId, port: [0] }, Status.INVALID_ARGUMENT, /^port\[0\]: /);
  });

  it('refuses an empty command with INVALID_ARGUMENT', () =>
    refused('exec', { containerId: running, cmd: [], stdout: true }, Status.INVALID_ARGUMENT, /^cmd: /));

  it('refuses tty with stderr, and no stream at all', async () => {
    await refused(
      'exec',
      { containerId: running, cmd: ['sh'], tty: true, stdout: true, stderr: true },
      Status.INVALID_ARGUMENT,
      /^stderr: /,
    );
    await refused('exec', { containerId: running, cmd: ['sh'] }, Status.INVALID_ARGUMENT, /at least one/);
  });

  it('refuses Attach with stdin, or a tty, to a container created without', async () => {
    await refused('attach', { containerId: running, stdin: true, stdout: true }, Status.FAILED_PRECONDITION, /stdin/);
    await refused('attach', { containerId: running, tty: true, stdout: true }, Status.FAILED_PRECONDITION, /tty/);
  });

  it('refuses PortForward to a sandbox that is not ready, and to a port outside 1-65535', async () => {
    await refused('portForward', { podSandboxId: stoppedPodId, port: [80] }, Status.FAILED_PRECONDITION, /NOTREADY/);
    await refused('portForward', { podSandboxId: podId, port: [80, 70_000] }, Status.INVALID_ARGUMENT, /^port\[1\]/);
  });

  it('refuses an exec whose container stopped after its URL was handed out, and records nothing', async () => {
    const brief = await create('brief');
    await call('startContainer', { containerId: brief });
    const issued = await url('exec', { containerId: brief, cmd: ['echo', 'hi'], stdout: true, stderr: true });
    await call('stopContainer', { containerId: brief, timeout: 0 });
    const before = await head();
    const result = await runSpdyClient(['-url', issued]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout.length, 0);
    assert.match(result.status, /"status":"Failure".*not RUNNING/);
    assert.equal(await head(), before, 'nothing recorded for a refused session');
  });

  it('answers each request to a pod stopped after its PortForward URL was handed out with why, recording nothing', async () => {
    const late = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig('late') })).podSandboxId;
    const issued = await url('portForward', { podSandboxId: late, port: [8080] });
    await call('stopPodSandbox', { podSandboxId: late });
    const before = await head();
    const result = await runSpdyClient(['-url', issued, '-mode', 'portforward', '-port', '8080', '-requests', '2']);
    const report = JSON.parse(result.stdout.toString()) as { matched: number; errors: string[] };
    assert.equal(report.matched, 0);
    assert.equal(report.errors.length, 2, result.stdout.toString());
    for (const error of report.errors)
      assert.match(error, new RegExp(`^error forwarding port 8080 to pod ${late}, uid : sandbox ${late} is NOTREADY`));
    assert.equal(await head(), before, 'nothing recorded for a refused session');
    assert.deepEqual(await streamEvents(h.socket, `sandbox-${late}`, ['PortForwardStarted', 'PortForwardEnded']), []);
  });

  it('records no session for a URL alone: events --type ExecStarted lists none', async () => {
    const r = await runCli(['events', '--socket', h.socket, '--type', 'ExecStarted', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '', 'no session has started: nothing is recorded for a URL alone');
  });
});
