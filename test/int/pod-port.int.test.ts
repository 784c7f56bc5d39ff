import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { socketInNetns } from '../../src/adapters/native/syscalls.js';
import { connectToPodPort, PortForwardConnectError } from '../../src/adapters/netns/pod-port.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { until } from '../support/until.js';

// A netns made with iproute2, as an operator would; an httpd from busybox-static listens in it.
const NETNS = `cri-ledger-pf-${process.pid}`;
const NETNS_PATH = `/run/netns/${NETNS}`;
const HTTP_PORT = 18080;
const CLOSED_PORT = 18081;
const TEST_TIMEOUT_MS = 30_000;

let workDir: string;
let httpd: ChildProcess | undefined;
let hostServer: Server;

function ip(...args: string[]): void {
  const run = spawnSync('ip', args, { encoding: 'utf8' });
  assert.equal(run.status, 0, `ip ${args.join(' ')}: ${run.stderr}`);
}

const ownNetns = (): string => readlinkSync('/proc/self/ns/net');
const mainThreadNetns = (): string => readlinkSync(`/proc/self/task/${process.pid}/ns/net`);

/** Sends an HTTP/1.0 GET on `socket` and returns the whole answer. */
function get(socket: Socket, path: string): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write(`GET ${path} HTTP/1.0\r\n\r\n`);
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.once('error', reject);
  });
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'cri-ledger-pod-port-'));
  await writeFile(join(workDir, 'hello.txt'), 'hello from the pod\n');
  ip('netns', 'add', NETNS);
  ip('-n', NETNS, 'link', 'set', 'lo', 'up');
  httpd = spawn(
    'ip',
    ['netns', 'exec', NETNS, 'busybox', 'httpd', '-f', '-p', `127.0.0.1:${HTTP_PORT}`, '-h', workDir],
    {
      stdio: 'ignore',
    },
  );
  await until('httpd to listen in the netns', async () => {
    const ss = spawnSync('ip', ['netns', 'exec', NETNS, 'busybox', 'netstat', '-ltn'], { encoding: 'utf8' });
    return ss.stdout.includes(`127.0.0.1:${HTTP_PORT}`);
  });
  hostServer = createServer((socket) => socket.end('hello from the host\n'));
  await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  httpd?.kill('SIGKILL');
  await new Promise((resolve) => hostServer?.close(resolve));
  spawnSync('ip', ['netns', 'del', NETNS]);
  await rm(workDir, { recursive: true, force: true });
});

describe('connectToPodPort', { timeout: TEST_TIMEOUT_MS }, () => {
  it("connects to a port on the loopback of the pod's network namespace", async () => {
    const before = ownNetns();
    const socket = await connectToPodPort(NETNS_PATH, HTTP_PORT);
    assert.match(await get(socket, '/hello.txt'), /^HTTP\/1\.[01] 200[\s\S]*\r\n\r\nhello from the pod\n$/);
    assert.equal(ownNetns(), before);
  });

  it('does not see the pod port from the host, nor the host port from the pod', async () => {
    const port = (hostServer.address() as { port: number }).port;
    await assert.rejects(connectToPodPort(undefined, HTTP_PORT), PortForwardConnectError);
    await assert.rejects(connectToPodPort(NETNS_PATH, port), PortForwardConnectError);
  });

  it('connects on the host for a host-network pod (no netns)', async () => {
    const port = (hostServer.address() as { port: number }).port;
    const socket = await connectToPodPort(undefined, port);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await new Promise((resolve) => socket.once('end', resolve));
    assert.equal(Buffer.concat(chunks).toString(), 'hello from the host\n');
  });

  it('rejects a refused port with a clear error naming the port and the namespace', async () => {
    await assert.rejects(connectToPodPort(NETNS_PATH, CLOSED_PORT), (error: unknown) => {
      assert.ok(error instanceof PortForwardConnectError, String(error));
      assert.equal(error.code, 'ECONNREFUSED');
      assert.equal(error.port, CLOSED_PORT);
      assert.match(error.message, new RegExp(`localhost:${CLOSED_PORT} inside network namespace ${NETNS_PATH}`));
      assert.match(error.message, /IPv4: .*ECONNREFUSED.*; IPv6: /);
      return true;
    });
  });

  it('rejects a missing netns and a port out of range', async () => {
    await assert.rejects(connectToPodPort(join(workDir, 'no-such-netns'), HTTP_PORT), /ENOENT/);
    await assert.rejects(connectToPodPort(join(workDir, 'hello.txt'), HTTP_PORT), /setns.*EINVAL/);
    await assert.rejects(connectToPodPort(NETNS_PATH, 0), InvalidArgumentError);
    await assert.rejects(connectToPodPort(NETNS_PATH, 65536), InvalidArgumentError);
  });

  it('serves many concurrent connections, and the main thread stays in its own netns throughout', async () => {
    const process0 = ownNetns();
    const thread0 = mainThreadNetns();
    assert.notEqual(process0, `net:[${statSync(NETNS_PATH).ino}]`, 'the test runs outside the pod netns');
    const answers = await Promise.all(
      Array.from({ length: 40 }, async () => get(await connectToPodPort(NETNS_PATH, HTTP_PORT), '/hello.txt')),
    );
    for (const answer of answers) assert.match(answer, /hello from the pod\n$/);
    // Raw sockets, and failures, take the same way back as the connections did.
    for (let i = 0; i < 200; i++) {
      closeSync(socketInNetns(NETNS_PATH, i % 2 === 0 ? 4 : 6));
      assert.equal(mainThreadNetns(), thread0);
      assert.throws(() => socketInNetns(join(workDir, 'hello.txt'), 4), /setns/);
      assert.equal(mainThreadNetns(), thread0);
    }
    await Promise.all(Array.from({ length: 50 }, () => connectToPodPort(NETNS_PATH, CLOSED_PORT).catch(() => 0)));
    assert.equal(ownNetns(), process0);
    assert.equal(mainThreadNetns(), thread0);
  });
});
