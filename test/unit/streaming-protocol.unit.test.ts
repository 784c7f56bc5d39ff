import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, createDeflate, inflateSync } from 'node:zlib';
import { errorStreamText, goJson } from '../../src/adapters/streaming/exit-status.js';
import { ResizeDecoder } from '../../src/adapters/streaming/resize-decoder.js';
import { adler32, SPDY3_HEADER_DICTIONARY } from '../../src/adapters/streaming/spdy/spdy-dictionary.js';
import {
  dataFrameHead,
  FrameReader,
  rstStreamFrame,
  synReplyFrame,
} from '../../src/adapters/streaming/spdy/spdy-frames.js';
import { HeaderBlockReader, HeaderBlockWriter } from '../../src/adapters/streaming/spdy/spdy-headers.js';
import { SpdyStream, type SpdyStreamHost } from '../../src/adapters/streaming/spdy/spdy-stream.js';
import { TokenRegistry } from '../../src/adapters/streaming/token-registry.js';

describe('streaming protocol pieces', () => {
  it("writes kubelet's error-stream texts for each protocol and outcome", () => {
    const command = ['sh', '-c', 'exit 3'];
    assert.equal(
      errorStreamText('v4.channel.k8s.io', 'exec', { exitCode: 0 }, command),
      '{"metadata":{},"status":"Success"}',
    );
    assert.equal(
      errorStreamText('v5.channel.k8s.io', 'exec', { exitCode: 3 }, command),
      '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command ' +
        '[sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
    );
    assert.equal(
      errorStreamText('v3.channel.k8s.io', 'exec', { exitCode: 3 }, command),
      'command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3',
    );
    assert.equal(errorStreamText('channel.k8s.io', 'exec', { exitCode: 0 }, command), undefined);
    assert.equal(
      errorStreamText('v4.base64.channel.k8s.io', 'attach', { exitCode: 1 }),
      '{"metadata":{},"status":"Success"}',
    );
    assert.equal(
      errorStreamText('v2.channel.k8s.io', 'attach', { error: 'container gone' }),
      'Internal error occurred: error attaching to container: container gone',
    );
  });

  it("escapes JSON as Go's encoding/json does", () => {
    assert.equal(goJson({ m: 'a<b>&c\u2028' }), '{"m":"a\\u003cb\\u003e\\u0026c\\u2028"}');
  });

  it('holds the 1,423-byte SPDY/3 dictionary zlib names by its Adler-32', () => {
    assert.equal(SPDY3_HEADER_DICTIONARY.length, 1423);
    assert.equal(adler32(SPDY3_HEADER_DICTIONARY), 0xe3c6a7c2);
    assert.equal(adler32(Buffer.from('Wikipedia')), 0x11e60398);
  });

  it('writes header blocks as one zlib stream that a standard inflater reads', () => {
    const writer = new HeaderBlockWriter();
    const first = writer.encode([['streamType', 'stdout']]);
    const second = writer.encode([]);
    const raw = inflateSync(Buffer.concat([first, second]), {
      dictionary: SPDY3_HEADER_DICTIONARY,
      finishFlush: constants.Z_SYNC_FLUSH,
    });
    const expected = Buffer.concat([
      Buffer.from([0, 0, 0, 1, 0, 0, 0, 10]),
      Buffer.from('streamtype'),
      Buffer.from([0, 0, 0, 6]),
      Buffer.from('stdout'),
      Buffer.from([0, 0, 0, 0]),
    ]);
    assert.deepEqual(raw, expected);
  });

  it('reads header blocks a peer deflates with the dictionary, one connection-long stream', async () => {
    const deflate = createDeflate({ dictionary: SPDY3_HEADER_DICTIONARY });
    const chunks: Buffer[] = [];
    deflate.on('data', (c: Buffer) => chunks.push(c));
    const block = async (raw: Buffer): Promise<Buffer> => {
      deflate.write(raw);
      await new Promise<void>((r) => deflate.flush(constants.Z_SYNC_FLUSH, () => r()));
      await new Promise((r) => setImmediate(r));
      return Buffer.concat(chunks.splice(0));
    };
    const kv = (pairs: Array<[string, string]>): Buffer => {
      const parts = [Buffer.alloc(4)];
      parts[0]!.writeUInt32BE(pairs.length);
      for (const text of pairs.flat()) {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(Buffer.byteLength(text));
        parts.push(length, Buffer.from(text));
      }
      return Buffer.concat(parts);
    };
    const reader = new HeaderBlockReader();
    const one = await block(
      kv([
        ['streamtype', 'data'],
        ['port', '8080'],
        ['requestid', '0'],
      ]),
    );
    const two = await block(
      kv([
        ['streamtype', 'error'],
        ['x', 'a\0b'],
      ]),
    );
    const [h1, h2] = await Promise.all([reader.decode(one), reader.decode(two)]);
    assert.deepEqual(
      [...h1.entries()],
      [
        ['streamtype', ['data']],
        ['port', ['8080']],
        ['requestid', ['0']],
      ],
    );
    assert.deepEqual(h2.get('x'), ['a', 'b']);
    reader.close();
    deflate.destroy();
  });

  it('splits frames at any chunk boundary', () => {
    const wire = Buffer.concat([
      synReplyFrame(1, Buffer.from('hdr')),
      dataFrameHead(3, 5, true),
      Buffer.from('hello'),
      rstStreamFrame(5, 5),
    ]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(wire.subarray(0, cut)), ...reader.push(wire.subarray(cut))];
      assert.deepEqual(
        frames.map((f) => f.type),
        ['ignored', 'data', 'rst-stream'],
      );
      const data = frames[1];
      assert.ok(data?.type === 'data' && data.fin && data.streamId === 3 && data.data.toString() === 'hello');
    }
  });

  it('lets go of the socket when a stream that paused it gets its FIN, though nobody asks it for more', async () => {
    const pausedBy = new Set<SpdyStream>();
    const host: SpdyStreamHost = {
      sendData: (_id, _chunk, _fin, done) => done(),
      sendReset: () => undefined,
      pauseFor: (stream) => pausedBy.add(stream),
      resumeFor: (stream) => pausedBy.delete(stream),
      forget: () => undefined,
    };
    const stream = new SpdyStream(host, 1, new Map());
    stream.pause();
    stream.read(0); // a reader is there, so a full buffer pauses the socket
    await new Promise((r) => setImmediate(r));
    // The last DATA frame and the FIN, as one socket read brings them: the DATA overfills
    // the buffer of a reader that is busy (paused) and the FIN ends the stream.
    stream.receive(Buffer.alloc(32 * 1024));
    assert.ok(pausedBy.has(stream), 'an overfull buffer pauses the socket');
    stream.receiveFin();
    assert.equal(pausedBy.size, 0, 'the FIN lets go: no more data can come for it');
    let read = 0;
    stream.on('data', (chunk: Buffer) => (read += chunk.length)).resume();
    await new Promise((r) => stream.once('end', r));
    assert.equal(read, 32 * 1024);
  });

  it('decodes resize messages split anywhere, back to back, in any letter case; stops at garbage', () => {
    const decoder = new ResizeDecoder();
    assert.deepEqual(decoder.push('{"Width":80,"Hei'), []);
    assert.deepEqual(decoder.push('ght":24}{"width":1,"height":2}\n'), [
      { width: 80, height: 24 },
      { width: 1, height: 2 },
    ]);
    assert.deepEqual(decoder.push('{"Width":"wide"}{"Width":5,"Height":5}'), []);
  });

  it('hands a token out once, for its kind, until it expires', async () => {
    const tokens = new TokenRegistry<string>(30);
    const a = tokens.issue('exec', 'A');
    assert.equal(tokens.take('attach', a), undefined);
    assert.equal(tokens.take('exec', a), 'A');
    assert.equal(tokens.take('exec', a), undefined);
    const b = tokens.issue('portforward', 'B');
    assert.notEqual(a, b);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(tokens.take('portforward', b), undefined);
    assert.equal(tokens.size, 0);
    tokens.clear();
  });
});
