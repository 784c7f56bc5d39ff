import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StringPool } from '../../src/projections/string-pool.js';

describe('StringPool', () => {
  it('gives back an equal string, and undefined for undefined', () => {
    const pool = new StringPool(4);
    const first = pool.of(['sha256:', 'abc'].join(''));
    assert.equal(pool.of(`sha256:${'abc'}`), first);
    assert.equal(pool.of(undefined), undefined);
    assert.equal(pool.size, 1);
  });

  it('holds at most its maximum: a full table starts over', () => {
    const pool = new StringPool(3);
    for (let i = 0; i < 10; i++) {
      assert.equal(pool.of(`image-${i}`), `image-${i}`);
      assert.ok(pool.size <= 3, `size ${pool.size} after ${i + 1} strings`);
    }
    assert.equal(pool.size, 1, 'the tenth string went into a fresh table (after 3, 6 and 9)');
  });
});
