import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * Exec, Attach and PortForward over the CRI socket, on a private containerd: a valid
 * request answers a streaming URL; every bad one is refused with its code before
 * anything happens (nothing registered, no event written). The sessions themselves
 * (SPDY, WebSocket, the containerd backends) are tested where they are built.
 */

const UNWIRED = /no streaming server is configured/;

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
  const head = async () => {
    const r = await runCli(['status', '--socket', h.socket, '--json']);
    return (JSON.parse(r.stdout) as { head: number }).head;
  };
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
  /** The URL a call answers; a todo until the streaming server is wired into the service. */
  const url = async (t: TestContext, method: string, request: object): Promise<string | undefined> => {
    try {
      return (await call<{ url: string }>(method, request)).url;
    } catch (error) {
      const e = error as ServiceError;
      if (e.code === Status.UNIMPLEMENTED && UNWIRED.test(e.details)) {
        t.todo('the streaming server is not wired into the service yet');
        return undefined;
      }
      throw error;
    }
  };

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
  after(() => h?.cleanup());

  it('answers Exec on a running container with a URL on the streaming server', async (t) => {
    const answer = await url(t, 'exec', { containerId: running, cmd: ['echo', 'hi'], stdout: true });
    if (answer !== undefined) assert.match(answer, /^https?:\/\/[^/]+\/.+/);
  });

  it('answers Attach and PortForward with URLs', async (t) => {
    const attached = await url(t, 'attach', { containerId: running, stdout: true, stderr: true });
    const forwarded = await url(t, 'portForward', { podSandboxId: podId, port: [8080] });
    for (const u of [attached, forwarded]) if (u !== undefined) assert.match(u, /^https?:\/\//);
  });

  it('refuses an unknown container with NOT_FOUND', () =>
    refused('exec', { containerId: 'f'.repeat(64), cmd: ['ls'], stdout: true }, Status.NOT_FOUND, /not found/));

  it('refuses a container that is not running with FAILED_PRECONDITION naming its state', () =>
    refused('exec', { containerId: created, cmd: ['ls'], stdout: true }, Status.FAILED_PRECONDITION, /CREATED/));

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

  it('refuses Attach with stdin to a container created without stdin', () =>
    refused('attach', { containerId: running, stdin: true, stdout: true }, Status.FAILED_PRECONDITION, /stdin/));

  it('refuses PortForward to a sandbox that is not ready, and to a port outside 1-65535', async () => {
    await refused('portForward', { podSandboxId: stoppedPodId, port: [80] }, Status.FAILED_PRECONDITION, /NOTREADY/);
    await refused('portForward', { podSandboxId: podId, port: [80, 70_000] }, Status.INVALID_ARGUMENT, /^port\[1\]/);
  });

  it('records no session for a URL alone: events --type ExecStarted lists none', async () => {
    const r = await runCli(['events', '--socket', h.socket, '--type', 'ExecStarted', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '', 'no session has started: nothing is recorded for a URL alone');
  });
});
