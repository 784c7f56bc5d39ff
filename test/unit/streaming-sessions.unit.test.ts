import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attach, exec, portForward, type StreamingDeps } from '../../src/commands/streaming-sessions.js';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
} from '../../src/domain/errors.js';
import { ev, hexId, streams } from '../support/fixtures.js';
import { hostPod, pod, runningContainer, streamingWorld } from '../support/streaming.js';

const call = { sessionId: '01JT0000000000000000SESS01', correlationId: 'req-exec-1' };
const app = runningContainer('app', { stdin: true, tty: false, stdinOnce: true });
const term = runningContainer('term', { stdin: true, tty: true });
const quiet = runningContainer('quiet', { stdin: false, tty: false });
const created = runningContainer('created', {}, { started: false });

/** given the pods and containers above, when `act` runs, then it throws `error` naming `pattern`, registering and writing nothing. */
async function refuses(act: (deps: StreamingDeps) => unknown, error: new (...a: never[]) => Error, pattern: RegExp) {
  const w = await streamingWorld(app.events, term.events, quiet.events, created.events);
  const head = w.head();
  assert.throws(
    () => act(w.deps),
    (e: unknown) => e instanceof error && pattern.test((e as Error).message),
  );
  assert.equal(w.streaming.registered.length, 0, 'nothing registered');
  assert.equal(w.head(), head, 'nothing written');
}

describe('Exec', () => {
  it('registers the session with the streaming server and answers its URL', async () => {
    const w = await streamingWorld(app.events);
    const request = { containerId: app.ref.id.slice(0, 12), cmd: ['sh', '-c', 'ls'], stdin: true, stdout: true };
    const url = exec(w.deps, { ...call, request });
    assert.equal(url, 'http://127.0.0.1:10010/exec/token-1');
    assert.deepEqual(w.streaming.registered, [
      {
        kind: 'exec',
        payload: {
          kind: 'exec',
          ...call,
          containerId: app.ref.id,
          cmd: ['sh', '-c', 'ls'],
          tty: false,
          stdin: true,
          stdout: true,
          stderr: false,
          auditRequestId: '',
        },
      },
    ]);
  });

  it('writes nothing when it hands out a URL: a URL nobody uses is no session', async () => {
    const w = await streamingWorld(app.events);
    const head = w.head();
    exec(w.deps, { ...call, request: { containerId: app.ref.id, cmd: ['true'], stdout: true } });
    assert.equal(w.head(), head);
  });

  it('refuses an unknown container with NOT_FOUND', () =>
    refuses(
      (d) => exec(d, { ...call, request: { containerId: hexId('nope'), cmd: ['ls'], stdout: true } }),
      NotFoundError,
      /not found/,
    ));

  it('refuses a container that is not running, naming its state', () =>
    refuses(
      (d) => exec(d, { ...call, request: { containerId: created.ref.id, cmd: ['ls'], stdout: true } }),
      FailedPreconditionError,
      /is CREATED, not RUNNING/,
    ));

  it('refuses an empty command', () =>
    refuses(
      (d) => exec(d, { ...call, request: { containerId: app.ref.id, cmd: [], stdout: true } }),
      InvalidArgumentError,
      /^cmd: /,
    ));

  it('refuses a request with no stream at all', () =>
    refuses(
      (d) => exec(d, { ...call, request: { containerId: app.ref.id, cmd: ['ls'] } }),
      InvalidArgumentError,
      /at least one/,
    ));

  it('refuses tty together with stderr', () =>
    refuses(
      (d) =>
        exec(d, { ...call, request: { containerId: app.ref.id, cmd: ['sh'], tty: true, stdout: true, stderr: true } }),
      InvalidArgumentError,
      /^stderr: must be false when tty is true/,
    ));

  it('refuses an empty container id before looking anything up', () =>
    refuses(
      (d) => exec(d, { ...call, request: { containerId: '', cmd: ['ls'], stdout: true } }),
      InvalidArgumentError,
      /^container_id/,
    ));

  it('validates first, then answers UNIMPLEMENTED when no streaming server is configured', async () => {
    const w = await streamingWorld(app.events);
    const deps = { projections: w.ledger.projections };
    assert.throws(
      () => exec(deps, { ...call, request: { containerId: app.ref.id, cmd: [], stdout: true } }),
      InvalidArgumentError,
    );
    assert.throws(
      () => exec(deps, { ...call, request: { containerId: app.ref.id, cmd: ['ls'], stdout: true } }),
      NotImplementedError,
    );
  });
});

describe('Attach', () => {
  it('attaches with the container own tty and stdin-once, never a stderr next to a terminal', async () => {
    const w = await streamingWorld(app.events, term.events);
    attach(w.deps, { ...call, request: { containerId: app.ref.id, stdin: true, stdout: true, stderr: true } });
    attach(w.deps, { ...call, request: { containerId: term.ref.id, stdin: true, stdout: true } });
    const [plain, tty] = w.streaming.registered.map((r) => r.payload);
    assert.deepEqual(
      [plain, tty].map((p) => p?.kind === 'attach' && [p.tty, p.stdin, p.stderr, p.stdinOnce]),
      [
        [false, true, true, true],
        [true, true, false, false],
      ],
    );
  });

  it('refuses stdin on a container created without stdin', () =>
    refuses(
      (d) => attach(d, { ...call, request: { containerId: quiet.ref.id, stdin: true, stdout: true } }),
      FailedPreconditionError,
      /not created with stdin/,
    ));

  it('refuses a tty on a container created without one', () =>
    refuses(
      (d) => attach(d, { ...call, request: { containerId: app.ref.id, tty: true, stdout: true } }),
      FailedPreconditionError,
      /not created with tty/,
    ));

  it('refuses a container that is not running', () =>
    refuses(
      (d) => attach(d, { ...call, request: { containerId: created.ref.id, stdout: true } }),
      FailedPreconditionError,
      /CREATED/,
    ));
});

describe('PortForward', () => {
  it('registers the pod netns and its ports, each once', async () => {
    const w = await streamingWorld();
    const url = portForward(w.deps, { ...call, request: { podSandboxId: pod.id, port: [8080, 80, 8080] } });
    assert.match(url, /\/portforward\/token-1$/);
    assert.deepEqual(w.streaming.registered[0]?.payload, {
      kind: 'portforward',
      ...call,
      sandboxId: pod.id,
      ports: [8080, 80],
      netnsPath: '/run/netns/x',
      hostNetwork: false,
    });
  });

  it('forwards on the host for a host-network pod', async () => {
    const w = await streamingWorld();
    portForward(w.deps, { ...call, request: { podSandboxId: hostPod.id, port: [] } });
    const p = w.streaming.registered[0]?.payload;
    assert.deepEqual(p?.kind === 'portforward' && [p.netnsPath, p.hostNetwork, p.ports], ['', true, []]);
  });

  it('refuses a port outside 1-65535, naming it', () =>
    refuses(
      (d) => portForward(d, { ...call, request: { podSandboxId: pod.id, port: [80, 0] } }),
      InvalidArgumentError,
      /^port\[1\]: 0 is not a port/,
    ));

  it('refuses a port above 65535', () =>
    refuses(
      (d) => portForward(d, { ...call, request: { podSandboxId: pod.id, port: [65_536] } }),
      InvalidArgumentError,
      /^port\[0\]/,
    ));

  it('refuses an unknown sandbox', () =>
    refuses(
      (d) => portForward(d, { ...call, request: { podSandboxId: hexId('gone'), port: [80] } }),
      NotFoundError,
      /sandbox/,
    ));

  it('refuses a sandbox that is not ready', async () => {
    const w = await streamingWorld();
    await w.ledger.append(streams.sandbox(pod), 'any', [ev.sandboxStopped()]);
    assert.throws(
      () => portForward(w.deps, { ...call, request: { podSandboxId: pod.id, port: [80] } }),
      (e: unknown) => e instanceof FailedPreconditionError && /is NOTREADY, not READY/.test((e as Error).message),
    );
    assert.equal(w.streaming.registered.length, 0);
  });
});
