import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { StreamingServer } from '../../src/adapters/streaming/contracts.js';
import type { FakePayload, FakeSessionHandlers } from '../support/fake-session-handlers.js';
import { runSpdyClient, startSpdyClient } from '../support/spdy-go-client.js';
import { payload, selfSignedCertificate, startFakeStreaming } from '../support/streaming-server.js';
import { until } from '../support/until.js';

/*
 * The streaming server against a SPDY client built on spdystream, the library under
 * client-go, kubectl, crictl and kubelet: exec and attach over every remote command
 * protocol, kubelet's exact error-stream texts, port forwarding with many requests on one
 * connection, and how sessions end (client gone, idle, shutdown, tokens).
 */

const SUCCESS = '{"metadata":{},"status":"Success"}';

describe('streaming over SPDY/3.1 (spdystream client)', () => {
  let server: StreamingServer<FakePayload>;
  let handlers: FakeSessionHandlers;

  before(async () => {
    ({ server, handlers } = await startFakeStreaming());
  });
  after(() => server.close());

  it('runs an exec with stdout and stderr, negotiating v5, and sends Success', async () => {
    const result = await runSpdyClient(['-url', server.register('exec', payload(['exit', '0']))]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'out\n');
    assert.equal(result.stderr, 'err\n');
    assert.equal(result.status, SUCCESS);
    assert.equal(handlers.sessions.at(-1)?.protocol, 'v5.channel.k8s.io');
  });

  it('forwards stdin until the client half-closes it, byte for byte', async () => {
    const input = randomBytes(3 * 1024 * 1024 + 7);
    const result = await runSpdyClient(
      ['-url', server.register('exec', payload(['cat'], { stdin: true, stderr: false })), '-stdin', '-stderr=false'],
      input,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.equals(input), `echoed ${result.stdout.length} of ${input.length} bytes`);
    const [record] = (await handlers.ended(handlers.sessions.length)).slice(-1);
    assert.equal(record?.end, 'exited');
    assert.equal(record?.bytes?.in, input.length);
    assert.equal(record?.bytes?.out, input.length);
  });

  it("reports a non-zero exit code as kubelet's NonZeroExitCode Status, JSON escaped as Go does", async () => {
    const command = ['exit', '7', '&&', '<x>'];
    const result = await runSpdyClient(['-url', server.register('exec', payload(command))]);
    assert.equal(result.code, 7);
    assert.equal(
      result.status,
      '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command ' +
        '[exit 7 \\u0026\\u0026 \\u003cx\\u003e], exit code 7","reason":"NonZeroExitCode",' +
        '"details":{"causes":[{"reason":"ExitCode","message":"7"}]}}',
    );
    assert.match(
      result.stderr,
      /command terminated with non-zero exit code: error executing command \[exit 7 && <x>\], exit code 7/,
    );
  });

  it('delivers terminal sizes with a tty, and opens no stderr stream', async () => {
    const result = await runSpdyClient([
      '-url',
      server.register('exec', payload(['resize', '2'], { tty: true })),
      '-tty',
      '-resize',
      '80x24,100x40',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), '80x24\n100x40\n');
  });

  it('runs exec -it: stdin, a tty and a resize stream together', async () => {
    const result = await runSpdyClient(
      [
        '-url',
        server.register('exec', payload(['cat'], { stdin: true, tty: true })),
        '-stdin',
        '-tty',
        '-resize',
        '80x24',
      ],
      'ls -l\nexit\n',
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'ls -l\nexit\n');
    assert.equal(result.status, SUCCESS);
  });

  it('negotiates the older protocols a client offers, with their error stream formats', async () => {
    const v4 = await runSpdyClient([
      '-url',
      server.register('exec', payload(['exit', '3'])),
      '-protocols',
      'v4.channel.k8s.io',
    ]);
    assert.equal(v4.code, 3);
    assert.match(v4.status, /^\{"metadata":\{\},"status":"Failure",.*"reason":"NonZeroExitCode"/);
    for (const protocol of ['v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']) {
      const failed = await runSpdyClient([
        '-url',
        server.register('exec', payload(['exit', '3'])),
        '-protocols',
        protocol,
      ]);
      assert.equal(
        failed.status,
        'command terminated with non-zero exit code: error executing command [exit 3], exit code 3',
      );
      assert.equal(failed.code, 1);
      const ok = await runSpdyClient(['-url', server.register('exec', payload(['exit', '0'])), '-protocols', protocol]);
      assert.equal(ok.status, '', `${protocol} writes nothing on success`);
      assert.equal(ok.code, 0);
      assert.equal(ok.stdout.toString(), 'out\n');
    }
    const v3tty = await runSpdyClient([
      '-url',
      server.register('exec', payload(['resize', '1'], { tty: true })),
      '-protocols',
      'v3.channel.k8s.io',
      '-tty',
      '-resize',
      '120x50',
    ]);
    assert.equal(v3tty.stdout.toString(), '120x50\n');
    const v2tty = await runSpdyClient([
      '-url',
      server.register('exec', payload(['exit', '0'], { tty: true })),
      '-protocols',
      'v2.channel.k8s.io',
      '-tty',
    ]);
    assert.equal(v2tty.code, 0, 'v2 has no resize stream, and the session must not wait for one');
  });

  it('refuses a client that offers no protocol the server speaks (403), or none at all (400)', async () => {
    const none = await runSpdyClient([
      '-url',
      server.register('exec', payload(['exit', '0'])),
      '-protocols',
      'v9.channel.k8s.io',
    ]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /403: unable to upgrade: unable to negotiate protocol/);
    const empty = await runSpdyClient(['-url', server.register('exec', payload(['exit', '0'])), '-protocols', '']);
    assert.match(empty.stderr, /400: unable to upgrade: X-Stream-Protocol-Version is required/);
  });

  it('answers 404 to a token used twice, an unknown one, and one of another kind', async () => {
    const once = server.register('exec', payload(['exit', '0']));
    assert.equal((await runSpdyClient(['-url', once])).code, 0);
    const twice = await runSpdyClient(['-url', once]);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /404: 404 page not found/);
    const base = server.register('exec', payload(['exit', '0']));
    assert.match((await runSpdyClient(['-url', `${base.slice(0, -4)}AAAA`])).stderr, /404/);
    assert.match((await runSpdyClient(['-url', base.replace('/exec/', '/attach/')])).stderr, /404/);
    assert.equal((await runSpdyClient(['-url', base])).code, 0, 'a wrong kind does not use the token up');
  });

  it('issues 128-bit base64url tokens on the URL it listens on', () => {
    const issued = new URL(server.register('attach', payload(['exit', '0'])));
    assert.equal(issued.host, `127.0.0.1:${server.address.port}`);
    const token = issued.pathname.split('/')[2] ?? '';
    assert.match(token, /^[A-Za-z0-9_-]{22,}$/);
    assert.ok(Buffer.from(token, 'base64url').length >= 16);
  });

  it('tells the handler client-gone when the client drops, and ends the session', async () => {
    const before = handlers.sessions.length;
    const run = startSpdyClient(['-url', server.register('exec', payload(['hang'], { stdin: true })), '-stdin']);
    await until('the session to start', async () => handlers.sessions.length > before);
    run.child.kill('SIGKILL');
    await run.result;
    await until('the session to end', async () => handlers.sessions[before]?.end !== undefined);
    assert.equal(handlers.sessions[before]?.end, 'client-gone');
  });

  it('runs attach like exec, and reports Success whatever the exit code, as kubelet does', async () => {
    const result = await runSpdyClient(['-url', server.register('attach', payload(['exit', '4']))]);
    assert.equal(result.code, 0);
    assert.equal(result.status, SUCCESS);
    assert.equal(result.stdout.toString(), 'out\n');
  });

  it("turns a handler's failure into kubelet's InternalError, and a plain return into Success", async () => {
    const failed = await runSpdyClient(['-url', server.register('exec', payload(['throw']))]);
    assert.equal(
      failed.status,
      '{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: boom",' +
        '"reason":"InternalError","details":{"causes":[{"message":"error executing command in container: boom"}]},"code":500}',
    );
    const returned = await runSpdyClient(['-url', server.register('exec', payload(['return']))]);
    assert.equal(returned.status, SUCCESS);
    assert.equal(returned.stdout.toString(), 'bye\n');
  });

  it('runs 24 sessions in parallel without mixing their bytes', async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => randomBytes(64 * 1024 + i));
    const results = await Promise.all(
      inputs.map((input) =>
        runSpdyClient(['-url', server.register('exec', payload(['cat'], { stdin: true })), '-stdin'], input),
      ),
    );
    results.forEach((result, i) => {
      assert.equal(result.code, 0, result.stderr);
      assert.ok(result.stdout.equals(inputs[i]!), `session ${i}`);
    });
  });

  it('forwards 64 concurrent port-forward requests on one connection', async () => {
    const result = await runSpdyClient([
      '-url',
      server.register('portforward', payload([])),
      '-mode',
      'portforward',
      '-port',
      '8080',
      '-requests',
      '64',
      '-size',
      '100000',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout.toString()), { requests: 64, matched: 0 + 64, errors: [] });
  });

  it("carries a refused port's message on that request's error stream", async () => {
    const result = await runSpdyClient([
      '-url',
      server.register('portforward', payload([])),
      '-mode',
      'portforward',
      '-port',
      '1',
      '-requests',
      '3',
    ]);
    const report = JSON.parse(result.stdout.toString()) as { matched: number; errors: string[] };
    assert.equal(report.matched, 0);
    assert.equal(report.errors.length, 3);
    assert.match(report.errors[0] ?? '', /^error forwarding port 1 to pod fake/);
  });
});

describe('streaming session lifetimes over SPDY', () => {
  it('answers 404 to a token that expired unused', async () => {
    const { server } = await startFakeStreaming({ tokenTtlMs: 200 });
    try {
      const expired = server.register('exec', payload(['exit', '0']));
      await new Promise((r) => setTimeout(r, 300));
      const result = await runSpdyClient(['-url', expired]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /404: 404 page not found/);
    } finally {
      await server.close();
    }
  });

  it('ends a session with no bytes either way after the idle timeout, pings or not', async () => {
    const { server, handlers } = await startFakeStreaming({ idleTimeoutMs: 400 });
    try {
      const started = Date.now();
      const quiet = runSpdyClient(['-url', server.register('exec', payload(['hang']))]);
      const pinging = runSpdyClient(['-url', server.register('exec', payload(['hang'])), '-ping-ms', '50']);
      await Promise.all([quiet, pinging]);
      const ended = await handlers.ended(2);
      assert.deepEqual(
        ended.map((s) => s.end),
        ['idle-timeout', 'idle-timeout'],
      );
      assert.ok(Date.now() - started >= 400);
    } finally {
      await server.close();
    }
  });

  it('keeps a session that moves bytes past the idle timeout', async () => {
    const { server } = await startFakeStreaming({ idleTimeoutMs: 300 });
    try {
      const result = await runSpdyClient([
        '-url',
        server.register('exec', payload(['big', `${64 << 20}`], { stderr: false })),
        '-stderr=false',
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.length, 64 << 20);
    } finally {
      await server.close();
    }
  });

  it('close() ends open sessions with shutdown and leaves no socket or timer', async () => {
    const resources = (): string[] =>
      process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap' || r === 'Timeout');
    const baseline = resources().length;
    const { server, handlers } = await startFakeStreaming();
    const runs = [
      startSpdyClient(['-url', server.register('exec', payload(['hang'], { stdin: true })), '-stdin']),
      startSpdyClient([
        '-url',
        server.register('portforward', payload([])),
        '-mode',
        'portforward',
        '-requests',
        '0',
        '-hold-ms',
        '30000',
      ]),
    ];
    await until('both sessions to start', async () => handlers.sessions.length === 2);
    await server.close();
    assert.deepEqual(
      handlers.sessions.map((s) => s.end),
      ['shutdown', 'shutdown'],
    );
    await Promise.all(runs.map((r) => r.result));
    await until('the sockets to close', async () => resources().length <= baseline, 5_000);
    assert.throws(() => server.register('exec', payload(['exit', '0'])), /closed/);
  });

  it('serves HTTPS with the configured certificate and key', async () => {
    const tls = selfSignedCertificate();
    const { server } = await startFakeStreaming({ tls });
    try {
      const issued = server.register('exec', payload(['exit', '0']));
      assert.match(issued, /^https:\/\/127\.0\.0\.1:\d+\/exec\//);
      const result = await runSpdyClient(['-url', issued, '-ca', tls.certFile]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.toString(), 'out\n');
    } finally {
      await server.close();
    }
  });
});
