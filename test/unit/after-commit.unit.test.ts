import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { afterCommit, afterCommitOne } from '../../src/adapters/eventlog/after-commit.js';

describe('afterCommit', () => {
  it('runs the observer after the committing tick and its promise continuations, once for all that came in that turn', async () => {
    const seen: Array<readonly number[]> = [];
    const order: string[] = [];
    const listener = afterCommit<number>((items) => {
      seen.push(items);
      order.push('observer');
    });
    listener([1, 2]);
    listener([3]);
    queueMicrotask(() => order.push('appender continues'));
    assert.deepEqual(seen, [], 'nothing observed in the commit tick');
    await nextTurn();
    assert.deepEqual(seen, [[1, 2, 3]]);
    assert.deepEqual(order, ['appender continues', 'observer']);
    listener([4]);
    await nextTurn();
    assert.deepEqual(seen, [[1, 2, 3], [4]], 'a later commit is a batch of its own');
  });

  it('hands a one-at-a-time observer every item in order', async () => {
    const seen: string[] = [];
    const listener = afterCommitOne<string>((item) => seen.push(item));
    listener('a');
    listener('b');
    assert.deepEqual(seen, []);
    await nextTurn();
    assert.deepEqual(seen, ['a', 'b']);
  });
});
