import assert from 'node:assert/strict';
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type ChannelOptions,
  type Client,
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type ServiceDefinition,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { pino } from 'pino';
import { encodeHeaderBlock, type HeaderField } from '../../src/adapters/grpc/hpack.js';
import { MAX_MESSAGE_BYTES, type SocketServer, startSocketServer } from '../../src/adapters/grpc/socket-server.js';
import { tempRoot } from '../support/cli.js';
import { frame, goAwayCode, PREFACE } from '../support/http2-frames.js';
import { rawUnaryMethod } from '../support/raw-service.js';

/*
 * The socket server on its own, with a bytes-in, bytes-out service: every :authority a
 * client may send is served, the 16 MiB limits hold on filtered connections, and one
 * broken or stalled connection ends or waits alone while others are served.
 */

const method = rawUnaryMethod('/test.Echo/Echo');
const echoService: ServiceDefinition = { Echo: method };
/** Answers `<request bytes>:<authority the handler saw>`, or `x-size` bytes when asked. */
const echoImplementation = {
  Echo(
    call: { request: Buffer; metadata: Metadata; getPath(): string },
    done: (error: null, response: Buffer) => void,
  ) {
    const size = Number(call.metadata.get('x-size')[0] ?? 0);
    done(null, size > 0 ? Buffer.alloc(size, 1) : Buffer.from(`${call.request.length}`));
  },
};

type Echo = Client & {
  Echo(request: Buffer, metadata: Metadata, callback: (e: ServiceError | null, r: Buffer) => void): void;
};
const EchoClient = makeGenericClientConstructor(echoService, 'Echo');

const echo = (client: Echo, request: Buffer, metadata = new Metadata()): Promise<Buffer> =>
  new Promise((resolve, reject) => client.Echo(request, metadata, (e, r) => (e ? reject(e) : resolve(r))));

const requestHeaders = (authority: string): HeaderField[] =>
  [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', method.path],
    [':authority', authority],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
  ].map(([name, value]) => ({ name: name!, value: value!, sensitive: false }));
/** A gRPC length-prefixed message: a zero compression flag, the 4-byte length, the body. */
function grpcMessage(body: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/** The first GOAWAY's error code in what the server sent on `socket`, or undefined when it closed without one. */
function goAwayOn(socket: Socket): Promise<number | undefined> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const code = goAwayCode(received);
      if (code !== undefined) resolve(code);
    });
    socket.on('close', () => resolve(undefined));
    socket.on('error', () => undefined);
  });
}

describe('the CRI socket serves any :authority', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let server: SocketServer;
  let socketPath: string;
  const clients: Client[] = [];
  const client = (options: ChannelOptions = {}): Echo => {
    const c = new EchoClient(`unix://${socketPath}`, credentials.createInsecure(), options) as unknown as Echo;
    clients.push(c);
    return c;
  };

  before(async () => {
    temp = await tempRoot('cri-ledger-socket-');
    socketPath = join(temp.dir, 'cri.sock');
    server = await startSocketServer({
      socketPath,
      services: [{ definition: echoService, implementation: echoImplementation }],
      logger: pino({ level: 'silent' }),
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await server?.close(1_000);
    await temp?.cleanup();
  });

  it('answers grpc-js clients told to send a socket path, a unix: URI or localhost', async () => {
    for (const authority of [undefined, socketPath, `unix://${socketPath}`, `unix:${socketPath}`, 'localhost']) {
      const c = client(authority === undefined ? {} : { 'grpc.default_authority': authority });
      for (let i = 0; i < 3; i++)
        assert.equal((await echo(c, Buffer.alloc(i + 7))).toString(), `${i + 7}`, `authority ${authority}`);
    }
  });

  it('answers raw HTTP/2 requests whose :authority is a path, a unix: URI, empty, or localhost', async () => {
    for (const authority of [socketPath, `unix://${socketPath}`, '', 'localhost']) {
      const session = http2Connect('http://localhost', { createConnection: () => connect(socketPath) });
      const result = await new Promise<{ grpcStatus: string; body: string }>((resolve, reject) => {
        session.on('error', reject);
        const stream = session.request({
          [h2.HTTP2_HEADER_METHOD]: 'POST',
          [h2.HTTP2_HEADER_PATH]: method.path,
          [h2.HTTP2_HEADER_AUTHORITY]: authority,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        const chunks: Buffer[] = [];
        let grpcStatus = '';
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('trailers', (t) => (grpcStatus = String(t['grpc-status'])));
        stream.on('error', reject);
        stream.on('close', () => resolve({ grpcStatus, body: Buffer.concat(chunks).subarray(5).toString() }));
        stream.end(grpcMessage(Buffer.alloc(5)));
      });
      session.close();
      assert.deepEqual(result, { grpcStatus: '0', body: '5' }, `authority ${JSON.stringify(authority)}`);
    }
  });

  it('keeps the 16 MiB message limit on a connection whose authority is rewritten', async () => {
    const c = client({ 'grpc.default_authority': socketPath, 'grpc.max_receive_message_length': 32 << 20 });
    const under = MAX_MESSAGE_BYTES - 1024;
    assert.equal((await echo(c, Buffer.alloc(under))).toString(), `${under}`);
    await assert.rejects(
      echo(c, Buffer.alloc(MAX_MESSAGE_BYTES + 1024)),
      (e: ServiceError) => e.code === status.RESOURCE_EXHAUSTED,
    );
    const big = new Metadata();
    big.set('x-size', String(MAX_MESSAGE_BYTES - 1024));
    assert.equal(
      (await echo(c, Buffer.alloc(1), big)).length,
      MAX_MESSAGE_BYTES - 1024,
      'a reply just under the limit arrives whole',
    );
  });

  it('answers 200 concurrent calls on one rewritten connection, each with its own reply', async () => {
    const c = client({ 'grpc.default_authority': socketPath });
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => echo(c, Buffer.alloc(i * 97))));
    assert.deepEqual(
      replies.map((r) => r.toString()),
      Array.from({ length: 200 }, (_, i) => `${i * 97}`),
    );
  });

  it('ends a rewritten connection that turns to broken HPACK with COMPRESSION_ERROR, and serves the others', async () => {
    const broken = connect(socketPath);
    const code = goAwayOn(broken);
    broken.write(Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(4, 1, 0, Buffer.alloc(0))]));
    broken.write(frame(1, 0x4, 1, encodeHeaderBlock(requestHeaders(socketPath))));
    broken.write(frame(0, 0x1, 1, grpcMessage(Buffer.alloc(3))));
    broken.write(frame(1, 0x4, 3, Buffer.from([0x80, 0xff, 0xff])));
    const c = client({ 'grpc.default_authority': socketPath });
    const others = Promise.all(Array.from({ length: 50 }, () => echo(c, Buffer.alloc(2))));
    assert.equal(await code, h2.NGHTTP2_COMPRESSION_ERROR);
    assert.equal((await others).length, 50);
    broken.destroy();
  });

  it('serves other connections while a rewritten one stops reading its reply', async () => {
    const stalled = connect(socketPath);
    stalled.write(Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(4, 1, 0, Buffer.alloc(0))]));
    const headers = [...requestHeaders(socketPath), { name: 'x-size', value: String(8 << 20), sensitive: false }];
    stalled.write(frame(1, 0x4, 1, encodeHeaderBlock(headers)));
    stalled.write(frame(0, 0x1, 1, grpcMessage(Buffer.alloc(1))));
    stalled.pause();
    const c = client({ 'grpc.default_authority': socketPath });
    for (let i = 0; i < 20; i++) assert.equal((await echo(c, Buffer.alloc(4))).toString(), '4');
    stalled.destroy();
  });
});
