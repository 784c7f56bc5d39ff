import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_MAX_LINE_BYTES,
  formatRecords,
  formatRfc3339Nano,
  LineSplitter,
  type LogPiece,
} from '../../src/adapters/logs/cri-log-format.js';

/** Pieces as `tag:text` strings (latin1, so split UTF-8 bytes stay visible one to one). */
function show(pieces: LogPiece[]): string[] {
  return pieces.map((p) => `${p.tag}:${p.text.toString('latin1')}`);
}

function split(input: string | Buffer, max: number, chunkSizes?: number[]): LogPiece[] {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const splitter = new LineSplitter(max);
  const out: LogPiece[] = [];
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const size = chunkSizes ? chunkSizes[i++ % chunkSizes.length]! : bytes.length;
    out.push(...splitter.push(bytes.subarray(at, at + size)));
    assert.ok(splitter.buffered <= max + 1, `holds ${splitter.buffered} bytes with max ${max}`);
    at += size;
  }
  out.push(...splitter.end());
  assert.equal(splitter.buffered, 0);
  return out;
}

describe('RFC3339Nano time', () => {
  it('prints nine digits when all are significant', () => {
    assert.equal(formatRfc3339Nano(1_700_000_000_123_456_789n), '2023-11-14T22:13:20.123456789Z');
  });

  it("trims trailing zeros of the fraction, as Go's .999999999 does", () => {
    assert.equal(formatRfc3339Nano(1_700_000_000_120_000_000n), '2023-11-14T22:13:20.12Z');
    assert.equal(formatRfc3339Nano(1_700_000_000_000_000_100n), '2023-11-14T22:13:20.0000001Z');
  });

  it('drops the dot when the fraction is zero', () => {
    assert.equal(formatRfc3339Nano(0n), '1970-01-01T00:00:00Z');
    assert.equal(formatRfc3339Nano(1_700_000_000_000_000_000n), '2023-11-14T22:13:20Z');
  });

  it('keeps leading zeros of the fraction and counts instants before 1970 down', () => {
    assert.equal(formatRfc3339Nano(1n), '1970-01-01T00:00:00.000000001Z');
    assert.equal(formatRfc3339Nano(-1n), '1969-12-31T23:59:59.999999999Z');
  });
});

describe('CRI log records', () => {
  it('writes time, stream, tag and text separated by one space, ending in a newline', () => {
    const out = formatRecords('2023-11-14T22:13:20.5Z', 'stderr', [
      { tag: 'P', text: Buffer.from('héllo', 'utf8') },
      { tag: 'F', text: Buffer.alloc(0) },
    ]);
    assert.deepEqual(
      out,
      Buffer.concat([
        Buffer.from('2023-11-14T22:13:20.5Z stderr P h'),
        Buffer.from([0xc3, 0xa9]),
        Buffer.from('llo\n2023-11-14T22:13:20.5Z stderr F \n'),
      ]),
    );
  });
});

describe('line splitting', () => {
  it('makes one F record per line and drops the newline', () => {
    assert.deepEqual(show(split('one\ntwo\n\nthree\n', 8)), ['F:one', 'F:two', 'F:', 'F:three']);
  });

  it('keeps a line of exactly the maximum whole', () => {
    assert.deepEqual(show(split('abcd\n', 4)), ['F:abcd']);
  });

  it('cuts a line one byte over the maximum into P then F', () => {
    assert.deepEqual(show(split('abcde\n', 4)), ['P:abcd', 'F:e']);
  });

  it('ends a line of a multiple of the maximum with a full F, never an empty one', () => {
    assert.deepEqual(show(split('abcdefghijkl\n', 4)), ['P:abcd', 'P:efgh', 'F:ijkl']);
  });

  it('uses 16 KiB by default, as kubelet and containerd do', () => {
    const pieces = split(`${'x'.repeat(DEFAULT_MAX_LINE_BYTES * 2 + 1)}\n`, DEFAULT_MAX_LINE_BYTES);
    assert.deepEqual(
      pieces.map((p) => [p.tag, p.text.length]),
      [
        ['P', 16384],
        ['P', 16384],
        ['F', 1],
      ],
    );
    assert.equal(new LineSplitter().maxLineBytes, 16384);
  });

  it('strips the \\r of a \\r\\n ending, and only that one', () => {
    assert.deepEqual(show(split('dos\r\nmid\rdle\r\r\n\r\n', 16)), ['F:dos', 'F:mid\rdle\r', 'F:']);
  });

  it('does not count a stripped \\r against the maximum, wherever the chunks end', () => {
    for (const chunks of [undefined, [1], [4], [5], [3, 2]]) {
      assert.deepEqual(
        show(split('abcd\r\nabcd\rx\n', 4, chunks)),
        ['F:abcd', 'P:abcd', 'F:\rx'],
        `chunks ${JSON.stringify(chunks)}`,
      );
    }
  });

  it('writes what is left at the end of the stream without a newline as P, as containerd does', () => {
    assert.deepEqual(show(split('done\nno newline', 64)), ['F:done', 'P:no newline']);
    assert.deepEqual(show(split('abcdefghij', 4)), ['P:abcd', 'P:efgh', 'P:ij']);
    assert.deepEqual(show(split('abcd\r', 4)), ['P:abcd', 'P:\r'], 'a \\r with no \\n after it is text');
    assert.deepEqual(show(split('', 4)), []);
  });

  it('cuts by bytes, splitting a multi-byte UTF-8 character between records, as containerd does', () => {
    const line = Buffer.from('aé€😀\n', 'utf8'); // 1 + 2 + 3 + 4 bytes of text
    const pieces = split(line, 4);
    assert.deepEqual(
      pieces.map((p) => [p.tag, [...p.text]]),
      [
        ['P', [0x61, 0xc3, 0xa9, 0xe2]],
        ['P', [0x82, 0xac, 0xf0, 0x9f]],
        ['F', [0x98, 0x80]],
      ],
    );
    assert.equal(
      Buffer.concat(pieces.map((p) => p.text)).toString('utf8'),
      'aé€😀',
      'the pieces join back to the text',
    );
  });

  it('gives the same records however the stream is chunked', () => {
    const input = Buffer.from(
      'short\n\r\nexactly8\nnine-byte\r\n' + 'z'.repeat(40) + '\r\r\n' + 'é'.repeat(9) + '\nabcdefgh\rtail\r',
      'utf8',
    );
    const whole = show(split(input, 8));
    for (const chunks of [[1], [2], [3], [7], [8], [9], [1, 5, 2], [17, 1]]) {
      assert.deepEqual(show(split(input, 8, chunks)), whole, `chunks ${JSON.stringify(chunks)}`);
    }
    assert.deepEqual(whole.slice(0, 4), ['F:short', 'F:', 'F:exactly8', 'P:nine-byt']);
  });

  it('holds at most max + 1 bytes while a long line without a newline streams through', () => {
    const splitter = new LineSplitter(1024);
    let emitted = 0;
    for (let i = 0; i < 200; i++) {
      emitted += splitter.push(Buffer.alloc(777, 0x61)).reduce((n, p) => n + p.text.length, 0);
      assert.ok(splitter.buffered <= 1025);
    }
    assert.equal(emitted + splitter.buffered, 777 * 200);
  });

  it('returns pieces that stay valid after the next push', () => {
    const splitter = new LineSplitter(4);
    const first = splitter.push(Buffer.from('ab'));
    const second = splitter.push(Buffer.from('cdefg'));
    const third = splitter.push(Buffer.from('h\n'));
    assert.deepEqual(show([...first, ...second, ...third]), ['P:abcd', 'F:efgh']);
  });

  it('refuses a maximum that is not a positive integer', () => {
    assert.throws(() => new LineSplitter(0), RangeError);
    assert.throws(() => new LineSplitter(1.5), RangeError);
  });
});
