import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { StreamingServer } from '../../src/adapters/streaming/contracts.js';
import type { FakePayload, FakeSessionHandlers } from '../support/fake-session-handlers.js';
import { payload, startFakeStreaming } from '../support/streaming-server.js';
import { until } from '../support/until.js';
import { openWsSession } from '../support/ws-stream-client.js';

/*
 * The streaming server against a WebSocket client (`ws`), speaking the channel protocols
 * as client-go's v5 executor, kubectl and newer crictl do: channel bytes, base64 text,
 * v5's close signal, the error channel's Status, resize, port forwarding per `?port=`.
 */

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

describe('streaming over WebSocket', () => {
  let server: StreamingServer<FakePayload>;
  let handlers: FakeSessionHandlers;

  before(async () => {
    ({ server, handlers } = await startFakeStreaming());
  });
  after(() => server.close());

  it('runs a v5 exec: stdin until the close signal, echoed stdout, Success on the error channel', async () => {
    const session = await openWsSession(server.register('exec', payload(['cat'], { stdin: true })), [
      'v5.channel.k8s.io',
      'v4.channel.k8s.io',
    ]);
    assert.equal(session.protocol, 'v5.channel.k8s.io');
    const input = randomBytes(256 * 1024);
    session.send(STDIN, input.subarray(0, 1000));
    session.send(STDIN, input.subarray(1000));
    session.closeChannel(STDIN);
    assert.equal(await session.closed, 1000);
    assert.ok(Buffer.concat(session.channels.get(STDOUT) ?? []).equals(input));
    assert.equal(session.text(ERROR), '{"metadata":{},"status":"Success"}');
    assert.equal(session.channels.get(STDOUT)?.[0]?.length, 0, 'an empty first message says the session is up');
  });

  it('sends the NonZeroExitCode Status on v4, and stderr on its own channel', async () => {
    const session = await openWsSession(server.register('exec', payload(['exit', '5'])), ['v4.channel.k8s.io']);
    await session.closed;
    assert.equal(session.text(STDOUT), 'out\n');
    assert.equal(session.text(STDERR), 'err\n');
    assert.equal(
      session.text(ERROR),
      '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command ' +
        '[exit 5], exit code 5","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"5"}]}}',
    );
  });

  it('speaks the base64 protocols as text frames, v4 with a Status and the older one with its message', async () => {
    const v4 = await openWsSession(server.register('exec', payload(['exit', '2'])), ['v4.base64.channel.k8s.io']);
    await v4.closed;
    assert.equal(v4.protocol, 'v4.base64.channel.k8s.io');
    assert.equal(v4.text(STDOUT), 'out\n');
    assert.match(v4.text(ERROR), /"reason":"NonZeroExitCode"/);
    const old = await openWsSession(server.register('exec', payload(['cat'], { stdin: true })), [
      'base64.channel.k8s.io',
    ]);
    old.send(STDIN, 'hello\n');
    await until('the echo', async () => old.text(STDOUT) === 'hello\n');
    old.ws.close();
    await old.closed;
  });

  it('takes a client that names no subprotocol as binary channel.k8s.io', async () => {
    const session = await openWsSession(server.register('exec', payload(['exit', '9'])), []);
    await session.closed;
    assert.equal(session.protocol, '');
    assert.equal(
      session.text(ERROR),
      'command terminated with non-zero exit code: error executing command [exit 9], exit code 9',
    );
  });

  it('delivers resize messages with a tty', async () => {
    const session = await openWsSession(server.register('exec', payload(['resize', '2'], { tty: true })), [
      'v5.channel.k8s.io',
    ]);
    session.send(RESIZE, '{"Width":80,"Height":24}');
    session.send(RESIZE, '{"Width":132,"Height":43}\n');
    await session.closed;
    assert.equal(session.text(STDOUT), '80x24\n132x43\n');
    assert.equal(session.channels.get(STDERR), undefined, 'no stderr with a tty');
  });

  it('refuses a subprotocol it does not speak (403) and a used token (404) before upgrading', async () => {
    await assert.rejects(
      openWsSession(server.register('exec', payload(['exit', '0'])), ['v9.channel.k8s.io']),
      /^Error: 403/,
    );
    const once = server.register('exec', payload(['exit', '0']));
    await (await openWsSession(once, ['v5.channel.k8s.io'])).closed;
    await assert.rejects(openWsSession(once, ['v5.channel.k8s.io']), /^Error: 404: 404 page not found/);
  });

  it('tells the handler client-gone when the connection drops', async () => {
    const before = handlers.sessions.length;
    const session = await openWsSession(server.register('attach', payload(['hang'], { stdin: true })), [
      'v5.channel.k8s.io',
    ]);
    await until('the session to start', async () => handlers.sessions.length > before);
    session.ws.terminate();
    await until('the session to end', async () => handlers.sessions[before]?.end !== undefined);
    assert.equal(handlers.sessions[before]?.end, 'client-gone');
  });

  it('runs 24 WebSocket sessions in parallel', async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => randomBytes(32 * 1024 + i));
    const sessions = await Promise.all(
      inputs.map(() =>
        openWsSession(server.register('exec', payload(['cat'], { stdin: true })), ['v5.channel.k8s.io']),
      ),
    );
    sessions.forEach((s, i) => {
      s.send(STDIN, inputs[i]!);
      s.closeChannel(STDIN);
    });
    await Promise.all(sessions.map((s) => s.closed));
    sessions.forEach((s, i) =>
      assert.ok(Buffer.concat(s.channels.get(STDOUT) ?? []).equals(inputs[i]!), `session ${i}`),
    );
  });

  it('forwards each ?port= on its channel pair, the port first, and reports a refused one', async () => {
    const issued = server.register('portforward', payload([]));
    const session = await openWsSession(`${issued}?port=8080&port=1,9090`, ['v4.channel.k8s.io']);
    await until('the port prefixes', async () => [0, 1, 2, 3, 4, 5].every((c) => session.channels.has(c)));
    for (const [channel, port] of [
      [0, 8080],
      [1, 8080],
      [2, 1],
      [3, 1],
      [4, 9090],
      [5, 9090],
    ] as const)
      assert.equal(session.channels.get(channel)?.[0]?.readUInt16LE(0), port);
    session.send(0, 'to 8080');
    session.send(4, 'to 9090');
    await until('the echoes', async () => session.text(0).endsWith('to 8080') && session.text(4).endsWith('to 9090'));
    await until('the refusal', async () => /error forwarding port 1/.test(session.text(3)));
    session.ws.close();
    await session.closed;
    await until('the session to end', async () => handlers.sessions.some((s) => s.kind === 'portforward' && s.end));
    const record = handlers.sessions.find((s) => s.kind === 'portforward');
    assert.equal(record?.requests, 3);
    assert.equal(record?.end, 'client-gone');
    assert.deepEqual(record?.bytes, { in: 14, out: 14 });
  });

  it('refuses a port forward without ports or with a bad one (400)', async () => {
    await assert.rejects(
      openWsSession(server.register('portforward', payload([])), ['v4.channel.k8s.io']),
      /400: query parameter "port" is required/,
    );
    await assert.rejects(
      openWsSession(`${server.register('portforward', payload([]))}?port=70000`, ['v4.channel.k8s.io']),
      /400: unable to parse "70000" as a port/,
    );
  });
});

describe('WebSocket session lifetimes', () => {
  it('ends an idle session although the client pings, as client-go does every 5 s', async () => {
    const { server, handlers } = await startFakeStreaming({ idleTimeoutMs: 400 });
    try {
      const session = await openWsSession(server.register('exec', payload(['hang'])), ['v5.channel.k8s.io']);
      const pinger = setInterval(() => session.ws.ping(), 50);
      await session.closed;
      clearInterval(pinger);
      const [ended] = await handlers.ended(1);
      assert.equal(ended?.end, 'idle-timeout');
    } finally {
      await server.close();
    }
  });

  it('close() ends WebSocket sessions with shutdown', async () => {
    const { server, handlers } = await startFakeStreaming();
    const session = await openWsSession(server.register('exec', payload(['hang'])), ['v5.channel.k8s.io']);
    await until('the session to start', async () => handlers.sessions.length === 1);
    await server.close();
    await session.closed;
    assert.equal(handlers.sessions[0]?.end, 'shutdown');
  });
});
