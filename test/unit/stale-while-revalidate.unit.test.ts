import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { staleWhileRevalidate } from '../../src/adapters/cache/stale-while-revalidate.js';

describe('staleWhileRevalidate', () => {
  it('reads once while fresh, answers stale at once while reading again, waits when too old', async () => {
    let clock = 0;
    let reads = 0;
    let release: (() => void) | undefined;
    const read = async (): Promise<number> => {
      reads += 1;
      const n = reads;
      if (n === 2) await new Promise<void>((resolve) => (release = resolve));
      return n;
    };
    const get = staleWhileRevalidate(read, { freshMs: 10, maxStaleMs: 100, now: () => clock });
    assert.equal(await get(), 1, 'never read: the caller waits for the read');
    clock = 5;
    assert.equal(await get(), 1);
    assert.equal(reads, 1, 'fresh: no read');
    clock = 50;
    assert.equal(await get(), 1, 'stale: the last value at once');
    assert.equal(await get(), 1);
    assert.equal(reads, 2, 'one background read at a time');
    release!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await get(), 2, 'the next call sees the background read');
    clock = 500;
    assert.equal(await get(), 3, 'too old: the caller waits for a new read');
  });

  it('keeps the last value when a background read fails, and passes a waited read’s failure on', async () => {
    let clock = 0;
    let fail = false;
    const get = staleWhileRevalidate(
      async () => {
        if (fail) throw new Error('read failed');
        return 'ok';
      },
      { freshMs: 10, maxStaleMs: 100, now: () => clock },
    );
    assert.equal(await get(), 'ok');
    fail = true;
    clock = 50;
    assert.equal(await get(), 'ok');
    clock = 500;
    await assert.rejects(get(), /read failed/);
  });

  it('forgets the value on invalidate, and a read begun before it stores nothing', async () => {
    let clock = 0;
    let value = 'old';
    let release: (() => void) | undefined;
    let slow = false;
    const get = staleWhileRevalidate(
      async () => {
        const seen = value;
        if (slow) await new Promise<void>((resolve) => (release = resolve));
        return seen;
      },
      { freshMs: 10, maxStaleMs: 100, now: () => clock },
    );
    assert.equal(await get(), 'old');
    clock = 50;
    slow = true;
    assert.equal(await get(), 'old', 'a background read of the old value starts');
    value = 'new';
    slow = false;
    get.invalidate();
    assert.equal(await get(), 'new', 'after invalidate the caller waits for a read of its own');
    release!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await get(), 'new', 'the read begun before invalidate did not overwrite it');
  });
});
