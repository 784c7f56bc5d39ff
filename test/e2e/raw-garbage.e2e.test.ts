import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { FRAME, frame, goAwayCode, PREFACE, parseFrames } from '../support/http2-frames.js';
import { grpcFrame, tag, varint, WIRE } from '../support/protobuf-wire.js';

/*
 * Bytes no gRPC client would send, on the service's unix socket: random bytes, a valid
 * HTTP/2 preface followed by broken frames, gRPC calls whose length prefix lies, and
 * protobuf with varints that never end. Each call fails (the connection is closed or the
 * call ends with a non-OK grpc-status), no event is written, and the service answers
 * Version on a fresh connection afterwards.
 */

/**
 * Writes `bytes`, then collects what the server sends until it closes the connection or
 * sends GOAWAY (after which Node's server lets the client close), or 5 s pass.
 */
function exchange(path: string, bytes: Buffer): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket: Socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closed: false });
    }, 5_000);
    socket.on('data', (c) => {
      chunks.push(c);
      if (goAwayCode(Buffer.concat(chunks)) !== undefined) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closed: true });
    });
    socket.on('connect', () => socket.end(bytes));
  });
}

/** The types of the HTTP/2 frames in what the server sent. */
const frameTypes = (bytes: Buffer): number[] => parseFrames(bytes).map((f) => f.type);

/** A gRPC call over a real HTTP/2 client whose body is `body` as given: returns the call's grpc-status and message. */
function grpcCall(socketPath: string, method: string, body: Buffer): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect('http://localhost', { createConnection: () => connect(socketPath) });
    session.on('error', reject);
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: 'POST',
      [h2.HTTP2_HEADER_PATH]: method,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status = -1;
    let message = '';
    const take = (headers: Record<string, unknown>) => {
      if (headers['grpc-status'] !== undefined) status = Number(headers['grpc-status']);
      if (typeof headers['grpc-message'] === 'string') message = decodeURIComponent(headers['grpc-message']);
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => {
      session.close();
      resolve({ status, message });
    });
    stream.end(body);
  });
}

describe('raw garbage on the CRI socket', () => {
  let h: CriHarness;
  const head = (): Promise<number> => ledgerHead(h.socket);
  const survives = async (before: number) => {
    // A fresh connection: the old one may rightly be gone.
    const client = LedgerClient.connect(h.socket);
    client.close();
    assert.equal(h.serve().child.exitCode, null, 'serve is still running');
    const version = await h.call<{ runtimeName: string }>('version', {});
    assert.equal(version.runtimeName, 'cri-ledger');
    assert.equal(await head(), before, 'no event was written');
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-garbage-' });
  });
  after(() => h?.cleanup());

  it('closes a connection that starts with random bytes', async () => {
    const before = await head();
    for (const size of [1, 24, 100, 4096, 1024 * 1024]) {
      const { closed, received } = await exchange(h.socket, randomBytes(size));
      assert.ok(closed, `the server closed the connection after ${size} random bytes`);
      assert.ok(!received.toString('latin1').includes('grpc-status: 0'), 'nothing succeeded');
    }
    await survives(before);
  });

  it('answers broken HTTP/2 frames after a valid preface with a GOAWAY carrying an error', async () => {
    const before = await head();
    const settings = frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0));
    const broken: Array<[string, Buffer]> = [
      ['DATA on stream 0', frame(FRAME.DATA, 0, 0, Buffer.from('x'))],
      ['HEADERS with garbage HPACK', frame(FRAME.HEADERS, 0x4, 1, randomBytes(64))],
      ['a frame longer than the maximum frame size', frame(FRAME.DATA, 0, 1, Buffer.alloc(10), 0xffffff)],
      ['SETTINGS with a length not a multiple of 6', frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(5))],
      ['WINDOW_UPDATE of 0 on the connection', frame(FRAME.WINDOW_UPDATE, 0, 0, Buffer.alloc(4))],
      ['CONTINUATION without HEADERS', frame(FRAME.CONTINUATION, 0x4, 1, randomBytes(16))],
      ['PING with 7 bytes', frame(FRAME.PING, 0, 0, Buffer.alloc(7))],
      ['an even stream id from the client', frame(FRAME.HEADERS, 0x5, 2, Buffer.from([0x82]))],
    ];
    for (const [what, bytes] of broken) {
      const { received } = await exchange(h.socket, Buffer.concat([PREFACE, settings, bytes]));
      const code = goAwayCode(received);
      console.log(`${what}: GOAWAY error code ${code}`);
      assert.ok(
        code !== undefined && code !== 0,
        `a GOAWAY with an error code after ${what} (got frame types ${frameTypes(received).join(',')}, code ${code})`,
      );
    }
    await survives(before);
  });

  it('fails gRPC calls whose length prefix is truncated or oversized, or whose protobuf has endless varints', async () => {
    const before = await head();
    const ok = grpcFrame(Buffer.alloc(0));
    const calls: Array<[string, string, Buffer, RegExp]> = [
      // A prefix that promises more than arrives: the call ends with its stream.
      ['truncated message', '/runtime.v1.RuntimeService/Version', grpcFrame(Buffer.from([0x0a, 0x02, 0x76]), 100), /./],
      ['truncated prefix', '/runtime.v1.RuntimeService/Version', ok.subarray(0, 3), /./],
      [
        'a 4 GiB length prefix',
        '/runtime.v1.RuntimeService/ContainerStatus',
        grpcFrame(Buffer.from([0x0a, 0x00]), 0xffffffff),
        /./,
      ],
      [
        'endless varint in a key',
        '/runtime.v1.RuntimeService/ContainerStatus',
        grpcFrame(Buffer.alloc(11, 0xff)),
        /deserializ/i,
      ],
      // protobufjs clamps a string's length to the bytes there are, so these two decode
      // (to a broken id) and are refused by validation instead.
      [
        'endless varint in a length',
        '/runtime.v1.RuntimeService/CreateContainer',
        grpcFrame(Buffer.concat([tag(1, WIRE.bytes), Buffer.alloc(11, 0xff)])),
        /deserializ|must be set/i,
      ],
      [
        'a length past the end',
        '/runtime.v1.RuntimeService/ContainerStatus',
        grpcFrame(Buffer.concat([tag(1, WIRE.bytes), varint(1_000_000), Buffer.from('abc')])),
        /deserializ|not found/i,
      ],
      [
        'an 11-byte varint (one too long) where a bool is',
        '/runtime.v1.RuntimeService/ContainerStatus',
        grpcFrame(
          Buffer.concat([
            tag(2, WIRE.varint),
            Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
          ]),
        ),
        /./,
      ],
      ['wire type 7', '/runtime.v1.ImageService/PullImage', grpcFrame(Buffer.from([0x0f, 0x01])), /deserializ/i],
      ['two messages in a unary call', '/runtime.v1.RuntimeService/RemoveContainer', Buffer.concat([ok, ok]), /./],
    ];
    for (const [what, method, body, message] of calls) {
      const result = await grpcCall(h.socket, method, body);
      console.log(`${what}: grpc-status ${result.status} ${result.message.slice(0, 100)}`);
      assert.notEqual(result.status, 0, `${what}: the call failed (grpc-status ${result.status}: ${result.message})`);
      if (result.status !== -1) assert.match(result.message, message, `${what}: ${result.message}`);
    }
    await survives(before);
  });
});
