import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AuthorityFilter,
  DEFAULT_MAX_FRAME_SIZE_BYTES,
  isServableAuthority,
} from '../../src/adapters/grpc/authority-filter.js';
import { encodeHeaderBlock, HpackDecoder, type HeaderField } from '../../src/adapters/grpc/hpack.js';
import { FRAME, frame, PREFACE, type ParsedFrame, parseFrames } from '../support/http2-frames.js';

const T = FRAME;

const field = (name: string, value: string): HeaderField => ({ name, value, sensitive: false });
const request = (authority: string): HeaderField[] => [
  field(':method', 'POST'),
  field(':scheme', 'http'),
  field(':path', '/runtime.v1.RuntimeService/Version'),
  field(':authority', authority),
  field('content-type', 'application/grpc'),
];
/** A literal with incremental indexing and a literal name: what makes the client's table grow. */
const indexedLiteral = (name: string, value: string): Buffer =>
  Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);

/** Runs `input` through a filter one byte at a time, and whole; both must give the same bytes. */
function filterBoth(input: Buffer, dropAck = false): { out: Buffer; filter: AuthorityFilter } {
  const whole = new AuthorityFilter(undefined, dropAck);
  const out = Buffer.concat(whole.push(input));
  const bytewise = new AuthorityFilter(undefined, dropAck);
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i++) pieces.push(...bytewise.push(input.subarray(i, i + 1)));
  assert.deepEqual(Buffer.concat(pieces), out, 'fed a byte at a time, the filter gives the same bytes');
  return { out, filter: whole };
}

/** The header lists of the HEADERS (+CONTINUATION) blocks in `frames`, decoded as the server would. */
function headerLists(frames: ParsedFrame[]): string[][][] {
  const decoder = new HpackDecoder();
  const lists: string[][][] = [];
  let block: Buffer[] = [];
  for (const f of frames) {
    if (f.type !== T.HEADERS && f.type !== T.CONTINUATION) continue;
    block.push(f.payload);
    if (f.flags & 0x4) {
      lists.push(decoder.decode(Buffer.concat(block)).map((h) => [h.name, h.value]));
      block = [];
    }
  }
  return lists;
}

describe('AuthorityFilter', () => {
  it('replaces a socket path, a unix: URI and an empty authority with localhost, and keeps a servable one', () => {
    for (const [sent, served] of [
      ['/run/cri-ledger/cri-ledger.sock', 'localhost'],
      ['unix:///run/x.sock', 'localhost'],
      ['', 'localhost'],
      ['localhost', 'localhost'],
      ['node-1:10010', 'node-1:10010'],
    ]) {
      const input = Buffer.concat([
        PREFACE,
        frame(T.SETTINGS, 0, 0, Buffer.alloc(0)),
        frame(T.HEADERS, 0x4, 1, encodeHeaderBlock(request(sent!))),
      ]);
      const { out, filter } = filterBoth(input);
      assert.deepEqual(out.subarray(0, PREFACE.length), PREFACE);
      const [list] = headerLists(parseFrames(out.subarray(PREFACE.length)));
      assert.deepEqual(
        list?.find(([n]) => n === ':authority'),
        [':authority', served],
        `${JSON.stringify(sent)} is served as ${served}`,
      );
      assert.equal(filter.firstBlock, sent === served ? 'untouched' : 'rewritten');
    }
  });

  it('follows the client table: a later request that indexes the stored path authority is rewritten too', () => {
    const first = Buffer.concat([Buffer.from([0x83, 0x86]), indexedLiteral(':authority', '/x.sock')]);
    const second = Buffer.from([0x83, 0x86, 0xbe]); // index 62: the entry the first request added
    const input = Buffer.concat([PREFACE, frame(T.HEADERS, 0x5, 1, first), frame(T.HEADERS, 0x5, 3, second)]);
    const lists = headerLists(parseFrames(filterBoth(input).out.subarray(PREFACE.length)));
    assert.deepEqual(lists, [
      [
        [':method', 'POST'],
        [':scheme', 'http'],
        [':authority', 'localhost'],
      ],
      [
        [':method', 'POST'],
        [':scheme', 'http'],
        [':authority', 'localhost'],
      ],
    ]);
  });

  it('passes other frames through unchanged, streamed across chunk boundaries', () => {
    const data = frame(T.DATA, 0x1, 1, Buffer.alloc(40_000, 7));
    const ping = frame(T.PING, 0, 0, Buffer.alloc(8, 1));
    const input = Buffer.concat([
      PREFACE,
      frame(T.HEADERS, 0x4, 1, encodeHeaderBlock(request('localhost'))),
      data,
      ping,
    ]);
    const frames = parseFrames(filterBoth(input).out.subarray(PREFACE.length));
    assert.deepEqual(
      frames.map((f) => f.type),
      [T.HEADERS, T.DATA, T.PING],
    );
    assert.deepEqual(
      Buffer.concat([frame(T.DATA, frames[1]!.flags, 1, frames[1]!.payload), frame(T.PING, 0, 0, frames[2]!.payload)]),
      Buffer.concat([data, ping]),
    );
  });

  it('keeps END_STREAM and the priority of a padded HEADERS frame, drops the padding', () => {
    const block = encodeHeaderBlock(request('/x.sock'));
    const priority = Buffer.from([0x80, 0, 0, 3, 200]);
    const payload = Buffer.concat([Buffer.from([4]), priority, block, Buffer.alloc(4)]);
    const [headers] = parseFrames(
      filterBoth(Buffer.concat([PREFACE, frame(T.HEADERS, 0x1 | 0x4 | 0x8 | 0x20, 5, payload)])).out.subarray(
        PREFACE.length,
      ),
    );
    assert.equal(headers!.flags, 0x1 | 0x4 | 0x20);
    assert.deepEqual(headers!.payload.subarray(0, 5), priority);
    assert.equal(headers!.streamId, 5);
  });

  it('reads a block across CONTINUATION frames and frames a large one within the maximum frame size', () => {
    const big = field('x-big', 'v'.repeat(DEFAULT_MAX_FRAME_SIZE_BYTES + 5000));
    const block = encodeHeaderBlock([...request('/x.sock'), big]);
    const input = Buffer.concat([
      PREFACE,
      frame(T.HEADERS, 0x1, 1, block.subarray(0, 1000)),
      frame(T.CONTINUATION, 0, 1, block.subarray(1000, 16_000)),
      frame(T.CONTINUATION, 0x4, 1, block.subarray(16_000)),
    ]);
    const frames = parseFrames(filterBoth(input).out.subarray(PREFACE.length));
    assert.deepEqual(
      frames.map((f) => f.type),
      [T.HEADERS, T.CONTINUATION],
    );
    assert.ok(frames.every((f) => f.payload.length <= DEFAULT_MAX_FRAME_SIZE_BYTES));
    assert.deepEqual(
      frames.map((f) => f.flags),
      [0x1, 0x4],
      'END_STREAM on HEADERS, END_HEADERS on the last',
    );
    const [list] = headerLists(frames);
    assert.deepEqual(list?.slice(3), [
      [':authority', 'localhost'],
      ['content-type', 'application/grpc'],
      ['x-big', big.value],
    ]);
  });

  it('drops only the first SETTINGS acknowledgement, and says where it was', () => {
    const ack = frame(T.SETTINGS, 0x1, 0, Buffer.alloc(0));
    const settings = frame(T.SETTINGS, 0, 0, Buffer.alloc(0));
    const input = Buffer.concat([PREFACE, settings, ack, ack]);
    const { out, filter } = filterBoth(input, true);
    assert.deepEqual(out, Buffer.concat([PREFACE, settings, ack]));
    assert.equal(filter.settingsAckAt, PREFACE.length + settings.length);
    assert.deepEqual(filterBoth(input, false).out, input, 'without the option nothing is dropped');
  });

  const giveUps: Array<[string, Buffer]> = [
    ['no preface', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['HPACK it cannot decode', Buffer.concat([PREFACE, frame(T.HEADERS, 0x4, 1, Buffer.from([0x80, 0x81]))])],
    [
      'a frame inside a header block',
      Buffer.concat([PREFACE, frame(T.HEADERS, 0, 1, Buffer.from([0x82])), frame(T.PING, 0, 0, Buffer.alloc(8))]),
    ],
    [
      'a HEADERS frame over the maximum size',
      Buffer.concat([PREFACE, frame(T.HEADERS, 0x4, 1, Buffer.alloc(DEFAULT_MAX_FRAME_SIZE_BYTES + 1, 0x82))]),
    ],
    ['a CONTINUATION of no block', Buffer.concat([PREFACE, frame(T.CONTINUATION, 0x4, 1, Buffer.from([0x82]))])],
    [
      'a PUSH_PROMISE from the client',
      Buffer.concat([PREFACE, frame(T.PUSH_PROMISE, 0x4, 1, Buffer.from([0, 0, 0, 2, 0x82]))]),
    ],
    ['padding longer than the frame', Buffer.concat([PREFACE, frame(T.HEADERS, 0x4 | 0x8, 1, Buffer.from([9, 0x82]))])],
  ];
  for (const [what, input] of giveUps) {
    it(`passes everything on as sent after ${what}, for nghttp2 to judge`, () => {
      const trailing = frame(T.HEADERS, 0x4, 3, encodeHeaderBlock(request('/x.sock')));
      const { out, filter } = filterBoth(Buffer.concat([input, trailing]));
      assert.deepEqual(out, Buffer.concat([input, trailing]));
      assert.equal(filter.firstBlock, 'given up');
    });
  }

  it('knows the authorities nghttp2 accepts', () => {
    for (const ok of ['localhost', 'a.b:80', '[::1]:8080', 'user@host', "%41!$&'()*+,;=~_-."])
      assert.ok(isServableAuthority(ok), ok);
    for (const bad of ['', '/run/x.sock', 'unix:///x', 'a b', 'a\u0000', 'é'])
      assert.ok(!isServableAuthority(bad), JSON.stringify(bad));
  });
});
