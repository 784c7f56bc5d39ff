import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { echoServerConfig } from '../support/echo-server.js';
import { removeAllPods } from '../support/pods.js';
import { ofSession, streamEvents } from '../support/session-events.js';
import { until } from '../support/until.js';
import { openWsSession, type WsSession } from '../support/ws-stream-client.js';

/*
 * The WebSocket transport through the whole service, as kubectl 1.30+ and newer crictl
 * reach kubelet's streaming server: CRI Exec, Attach or PortForward answers a URL, a `ws`
 * client opens it with a channel subprotocol (binary v5 and v4, the base64 ones), and a
 * real containerd runs the command, the container's own stdio answers, or a pod's echo
 * server answers the forwarded port. Each
 * session is recorded with its transport and negotiated protocol.
 */

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const SUCCESS = '{"metadata":{},"status":"Success"}';

describe('exec, attach and port-forward sessions end to end, over WebSocket', () => {
  let h: CriHarness;
  let podId = '';
  let containerId = '';
  const pod = { metadata: { name: 'ws', uid: 'uid-ws', namespace: 'default', attempt: 0 } };
  const execUrl = async (cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}) =>
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
  const forwardUrl = async (ports: number[]) =>
    (await h.call<{ url: string }>('portForward', { podSandboxId: podId, port: ports })).url;
  /** The start and end of the one session whose start is the newest of `types`, once it has ended. */
  const lastSession = async (
    stream: string,
    types: ['ExecStarted', 'ExecEnded'] | ['AttachStarted', 'AttachEnded'] | ['PortForwardStarted', 'PortForwardEnded'],
  ): Promise<[LedgerEvent, LedgerEvent]> => {
    let pair: LedgerEvent[] = [];
    await until(`${types[1]}`, async () => {
      const events = await streamEvents(h.socket, stream, types);
      const start = events.filter((e) => e.type === types[0]).at(-1);
      pair = start ? ofSession(events, (start.data as { sessionId: string }).sessionId) : [];
      return pair.length === 2;
    });
    return [pair[0]!, pair[1]!];
  };
  const lastExec = () => lastSession(`container-${containerId}`, ['ExecStarted', 'ExecEnded']);
  const lastForward = () => lastSession(`sandbox-${podId}`, ['PortForwardStarted', 'PortForwardEnded']);
  const binary = (s: WsSession, channel: number) => Buffer.concat(s.channels.get(channel) ?? []);

  before(async () => {
    h = await startCriHarness({ network: true, prefix: 'cri-ledger-e2e-ws-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    containerId = (
      await h.call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: pod,
        config: {
          metadata: { name: 'echo', attempt: 0 },
          image: { image: 'busybox' },
          ...echoServerConfig(8080, 8081),
        },
      })
    ).containerId;
    await h.call('startContainer', { containerId });
    await until('the echo server to listen', async () => {
      const r = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['netstat', '-ltn'], timeout: 10 });
      return Buffer.from(r.stdout).toString().includes(':8080 ');
    });
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('runs a v5 exec: output on its channels, the exit code as kubelet’s Status, both ends recorded', async () => {
    const session = await openWsSession(await execUrl(['sh', '-c', 'echo out; echo err >&2; exit 3']), [
      'v5.channel.k8s.io',
      'v4.channel.k8s.io',
    ]);
    assert.equal(session.protocol, 'v5.channel.k8s.io');
    assert.equal(await session.closed, 1000);
    assert.equal(session.text(STDOUT), 'out\n');
    assert.equal(session.text(STDERR), 'err\n');
    assert.match(session.text(ERROR), /"reason":"NonZeroExitCode".*"causes":\[\{"reason":"ExitCode","message":"3"\}\]/);
    const [started, ended] = await lastExec();
    assert.equal(started.type === 'ExecStarted' && started.data.transport, 'websocket');
    assert.equal(started.type === 'ExecStarted' && started.data.protocol, 'v5.channel.k8s.io');
    assert.equal(ended.type === 'ExecEnded' && ended.data.reason, 'exited');
    assert.equal(ended.type === 'ExecEnded' && ended.data.exitCode, 3);
    assert.equal(ended.type === 'ExecEnded' && ended.data.bytesOut, 8);
  });

  it('forwards stdin until v5’s close signal, byte for byte', async () => {
    const session = await openWsSession(await execUrl(['cat'], { stdin: true }), ['v5.channel.k8s.io']);
    const input = randomBytes(256 * 1024);
    session.send(STDIN, input.subarray(0, 1000));
    session.send(STDIN, input.subarray(1000));
    session.closeChannel(STDIN);
    assert.equal(await session.closed, 1000);
    assert.ok(binary(session, STDOUT).equals(input), 'stdout is stdin');
    assert.equal(session.text(ERROR), SUCCESS);
    const [, ended] = await lastExec();
    assert.equal(ended.type === 'ExecEnded' && ended.data.bytesIn, input.length);
    assert.equal(ended.type === 'ExecEnded' && ended.data.exitCode, 0);
  });

  it('speaks v4 and the base64 protocols: stdin, binary output, the Status or the bare message', async () => {
    const v4 = await openWsSession(await execUrl(['sh', '-c', 'read l; echo got-$l'], { stdin: true }), [
      'v4.channel.k8s.io',
    ]);
    v4.send(STDIN, 'one\n');
    assert.equal(await v4.closed, 1000);
    assert.equal(v4.text(STDOUT), 'got-one\n');
    assert.equal(v4.text(ERROR), SUCCESS);

    const b64 = await openWsSession(await execUrl(['sh', '-c', "printf '\\001\\377\\000'; exit 2"]), [
      'v4.base64.channel.k8s.io',
    ]);
    assert.equal(b64.protocol, 'v4.base64.channel.k8s.io');
    await b64.closed;
    assert.deepEqual([...binary(b64, STDOUT)], [1, 255, 0]);
    assert.match(b64.text(ERROR), /"reason":"NonZeroExitCode"/);
    const [started] = await lastExec();
    assert.equal(started.type === 'ExecStarted' && started.data.protocol, 'v4.base64.channel.k8s.io');

    const old = await openWsSession(await execUrl(['sh', '-c', 'exit 4']), ['base64.channel.k8s.io']);
    await old.closed;
    assert.equal(
      old.text(ERROR),
      'command terminated with non-zero exit code: error executing command [sh -c exit 4], exit code 4',
    );
  });

  it('gives a tty exec the size the client sends on the resize channel', async () => {
    const session = await openWsSession(await execUrl(['sh', '-c', 'sleep 1; stty size'], { tty: true }), [
      'v5.channel.k8s.io',
    ]);
    session.send(RESIZE, '{"Width":100,"Height":40}');
    await session.closed;
    assert.match(session.text(STDOUT), /40 100/);
    assert.equal(session.channels.get(STDERR), undefined, 'a terminal has no stderr');
  });

  it('attaches over v5: typed lines reach the container’s stdin, v5’s close detaches with Success', async () => {
    const { containerId: reader } = await h.call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: pod,
      config: {
        metadata: { name: 'reader', attempt: 0 },
        image: { image: 'busybox' },
        command: ['sh', '-c', 'while read l; do echo got-$l; echo err-$l >&2; done'],
        stdin: true,
      },
    });
    await h.call('startContainer', { containerId: reader });
    const { url } = await h.call<{ url: string }>('attach', {
      containerId: reader,
      stdin: true,
      stdout: true,
      stderr: true,
    });
    const session = await openWsSession(url, ['v5.channel.k8s.io']);
    session.send(STDIN, 'one\n');
    await until(
      'the answer on both outputs',
      async () => session.text(STDOUT) === 'got-one\n' && session.text(STDERR) === 'err-one\n',
    );
    session.closeChannel(STDIN);
    assert.equal(await session.closed, 1000);
    assert.equal(session.text(ERROR), SUCCESS);
    const [started, ended] = await lastSession(`container-${reader}`, ['AttachStarted', 'AttachEnded']);
    assert.equal(started.type === 'AttachStarted' && started.data.transport, 'websocket');
    assert.equal(started.type === 'AttachStarted' && started.data.protocol, 'v5.channel.k8s.io');
    assert.equal(ended.type === 'AttachEnded' && ended.data.reason, 'client-gone');
    assert.equal(ended.type === 'AttachEnded' && ended.data.bytesIn, 4);
    const status = await h.call<{ status: { state: string } }>('containerStatus', { containerId: reader });
    assert.equal(status.status.state, 'CONTAINER_RUNNING', 'detaching leaves the container running');
  });

  it('forwards each ?port= into the pod’s namespace on its channel pair, answers a refused one, and records both', async () => {
    const session = await openWsSession(`${await forwardUrl([])}?port=8080&port=9`, ['v4.channel.k8s.io']);
    await until('the refusal', async () =>
      session.text(3).slice(2).startsWith(`error forwarding port 9 to pod ${podId}, uid : `),
    );
    assert.equal(session.channels.get(0)?.[0]?.readUInt16LE(0), 8080);
    const payload = randomBytes(100_000);
    session.send(0, payload);
    await until('the echo', async () => binary(session, 0).length >= 2 + payload.length);
    assert.ok(binary(session, 0).subarray(2).equals(payload), 'the echo is what was sent');
    session.ws.close();
    await session.closed;
    const [started, ended] = await lastForward();
    assert.equal(started.type === 'PortForwardStarted' && started.data.transport, 'websocket');
    assert.equal(started.type === 'PortForwardStarted' && started.data.protocol, 'v4.channel.k8s.io');
    assert.equal(ended.type === 'PortForwardEnded' && ended.data.reason, 'client-gone');
    assert.deepEqual(ended.type === 'PortForwardEnded' && ended.data.ports, [
      { port: 8080, connections: 1, errors: 0, bytesIn: 100_000, bytesOut: 100_000 },
      { port: 9, connections: 1, errors: 1, bytesIn: 0, bytesOut: 0 },
    ]);
  });

  it('closes the pod-side connection of a client that drops a port forward mid-stream', async () => {
    const established = async () => {
      const r = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['netstat', '-tn'], timeout: 10 });
      return Buffer.from(r.stdout)
        .toString()
        .split('\n')
        .filter((l) => l.includes(':8080 ') && l.includes('ESTABLISHED'));
    };
    const session = await openWsSession(`${await forwardUrl([])}?port=8080`, ['v4.channel.k8s.io']);
    session.send(0, 'still open');
    await until('the echo', async () => session.text(0).endsWith('still open'));
    assert.notDeepEqual(await established(), [], 'the forwarded connection is open in the pod');
    session.ws.terminate();
    const [, ended] = await lastForward();
    assert.equal(ended.type === 'PortForwardEnded' && ended.data.reason, 'client-gone');
    await until('no connection left in the pod', async () => (await established()).length === 0);
  });

  it('keeps forwarding one port while the client still writes to another whose connection the pod reset', async () => {
    const session = await openWsSession(`${await forwardUrl([])}?port=8081&port=8080`, ['v4.channel.k8s.io']);
    session.send(0, 'x');
    await until('the reset on its error channel', async () => session.text(1).slice(2).includes('uid : '));
    // What the client goes on sending to the broken port is dropped, never left to block the others.
    for (let i = 0; i < 64; i++) session.send(0, randomBytes(64 * 1024));
    session.send(2, 'still forwarding');
    await until('the echo on the other port', async () => session.text(2).endsWith('still forwarding'));
    session.ws.close();
    await session.closed;
  });

  it('forwards the PortForward request’s ports when the URL names none, in base64 too', async () => {
    const session = await openWsSession(await forwardUrl([8080]), ['v4.base64.channel.k8s.io']);
    assert.equal(session.protocol, 'v4.base64.channel.k8s.io');
    await until('the port prefix', async () => session.channels.has(0));
    session.send(0, 'hello over base64');
    await until('the echo', async () => session.text(0).endsWith('hello over base64'));
    session.ws.close();
    await session.closed;
    const [started] = await lastForward();
    assert.equal(started.type === 'PortForwardStarted' && started.data.protocol, 'v4.base64.channel.k8s.io');
  });
});
