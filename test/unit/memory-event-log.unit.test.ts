import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEventLog } from '../support/event-log-contract.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

describeEventLog('memory', async () => ({ log: new MemoryEventLog(), cleanup: async () => {} }));

it('restores stream versions and the head when a batch write fails', async () => {
  const log = new MemoryEventLog();
  const c = container('a');
  log.failNextWrite = new Error('disk full');
  await assert.rejects(log.append(streams.container(c), 0, [ev.nameReserved(c)]), /disk full/);
  assert.equal(log.head(), 0);
  assert.equal(await log.streamVersion(streams.container(c)), 0);
  const written = await log.append(streams.container(c), 0, [ev.nameReserved(c)]);
  assert.deepEqual(
    written.map((e) => [e.seq, e.version]),
    [[1, 1]],
  );
});

it('writes appends that queue behind a slow batch together in the next one', async () => {
  const log = new MemoryEventLog();
  log.writeDelayMs = 5;
  const appends = Array.from({ length: 20 }, (_, i) => {
    const c = container(`c${i}`);
    return log.append(streams.container(c), 0, [ev.nameReserved(c)]);
  });
  await Promise.all(appends);
  assert.equal(log.head(), 20);
  assert.ok(log.batchWrites <= 2, `expected at most 2 batches, got ${log.batchWrites}`);
});
