import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HpackError } from '../../src/adapters/grpc/hpack-errors.js';
import { huffmanDecode } from '../../src/adapters/grpc/hpack-huffman.js';
import { encodeHeaderBlock, HpackDecoder, type HeaderField } from '../../src/adapters/grpc/hpack.js';

// The request examples of RFC 7541, Appendix C.3 (plain strings) and C.4 (Huffman), as
// hex: three requests on one connection, the later ones indexing what the first added.
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s/g, ''), 'hex');
const pairs = (fields: HeaderField[]): string[][] => fields.map((f) => [f.name, f.value]);

const FIRST = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const SECOND = [...FIRST, ['cache-control', 'no-cache']];
const THIRD = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];

describe('HPACK decoder', () => {
  it('decodes the RFC 7541 C.3 requests, following the dynamic table across blocks', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(pairs(decoder.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))), FIRST);
    assert.deepEqual(pairs(decoder.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865'))), SECOND);
    assert.deepEqual(
      pairs(decoder.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'))),
      THIRD,
    );
  });

  it('decodes the RFC 7541 C.4 requests (Huffman-coded strings)', () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(pairs(decoder.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))), FIRST);
    assert.deepEqual(pairs(decoder.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))), SECOND);
    assert.deepEqual(pairs(decoder.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))), THIRD);
  });

  it('evicts the oldest entries when the table is full, so indexes shift as the peer expects', () => {
    // Table of 80 bytes after a size update: each entry below is 1 + 10 + 32 = 43 bytes, so one fits.
    const decoder = new HpackDecoder();
    const literal = (name: string, value: string) =>
      Buffer.concat([
        Buffer.from([0x40, name.length]),
        Buffer.from(name),
        Buffer.from([value.length]),
        Buffer.from(value),
      ]);
    assert.deepEqual(pairs(decoder.decode(Buffer.concat([Buffer.from([0x3f, 0x31]), literal('a', 'aaaaaaaaaa')]))), [
      ['a', 'aaaaaaaaaa'],
    ]);
    assert.deepEqual(pairs(decoder.decode(Buffer.from([0xbe]))), [['a', 'aaaaaaaaaa']]);
    decoder.decode(literal('b', 'bbbbbbbbbb'));
    assert.deepEqual(pairs(decoder.decode(Buffer.from([0xbe]))), [['b', 'bbbbbbbbbb']]);
    assert.throws(() => decoder.decode(Buffer.from([0xbf])), HpackError, 'the evicted entry is gone');
  });

  it('keeps the never-indexed bit of a sensitive field', () => {
    const block = Buffer.concat([Buffer.from([0x10, 6]), Buffer.from('secret'), Buffer.from([2]), Buffer.from('s3')]);
    assert.deepEqual(new HpackDecoder().decode(block), [{ name: 'secret', value: 's3', sensitive: true }]);
  });

  const refusals: Array<[string, Buffer]> = [
    ['index 0', Buffer.from([0x80])],
    ['an index past both tables', Buffer.from([0xff, 0x10])],
    ['a string longer than the block', Buffer.from([0x40, 0x05, 0x61])],
    ['an integer cut off', Buffer.from([0x7f])],
    ['an integer too large', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])],
    ['a table size above the limit', Buffer.from([0x3f, 0xe2, 0x1f])],
    ['a table size update after a field', Buffer.from([0x82, 0x20])],
    ['Huffman padding that is not all ones', Buffer.from([0x40, 0x81, 0x00, 0x01, 0x61])],
  ];
  for (const [what, block] of refusals) {
    it(`refuses ${what}`, () => assert.throws(() => new HpackDecoder().decode(block), HpackError));
  }
});

describe('HPACK Huffman code', () => {
  it('decodes what RFC 7541 C.4.1 encodes', () => {
    assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')).toString('latin1'), 'www.example.com');
    assert.equal(huffmanDecode(hex('a8eb 1064 9cbf')).toString('latin1'), 'no-cache');
  });

  it('refuses padding longer than 7 bits and the EOS symbol inside a string', () => {
    assert.throws(() => huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff ff')), HpackError);
    assert.throws(() => huffmanDecode(hex('ffff ffff')), HpackError);
  });
});

describe('HPACK encoder without a dynamic table', () => {
  it('uses the static table for an exact match and for a name', () => {
    const block = encodeHeaderBlock([
      { name: ':method', value: 'POST', sensitive: false },
      { name: ':authority', value: 'localhost', sensitive: false },
    ]);
    assert.deepEqual(
      [...block.subarray(0, 3)],
      [0x83, 0x01, 9],
      'indexed :method POST, then :authority by name index 1',
    );
  });

  it('round-trips any header list through a fresh decoder, which it leaves with an empty table', () => {
    const octets = fc.string({
      unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
      maxLength: 300,
    });
    const field = fc.record({
      name: fc.oneof(octets, fc.constantFrom(':authority', ':path', 'content-type', 'te')),
      value: octets,
      sensitive: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(field, { maxLength: 20 }), (generated) => {
        const fields = generated.map((f) => ({ ...f }));
        const decoder = new HpackDecoder();
        assert.deepEqual(decoder.decode(encodeHeaderBlock(fields)), fields);
        // Index 62 would be the first dynamic entry: there must be none.
        assert.throws(() => decoder.decode(Buffer.from([0xbe])), HpackError);
      }),
    );
  });
});
