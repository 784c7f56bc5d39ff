import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { runSaga, type Failpoints } from '../../src/commands/saga.js';
import { container, ev, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

/*
 * A Compensated the log refuses (its disk is full) is tried again in the background:
 * until it lands, the saga's NameReserved holds the name, and kubelet's retry would be
 * refused with "name is reserved" until a restart.
 */

const c = container('c1');
const stream = streams.container(c);
const failAt = (point: string): Failpoints => ({
  hit: async (p) => {
    if (p === point) throw Object.assign(new Error(`failpoint ${p}`), { code: 'FAILPOINT' });
  },
});

it('records Compensated once the log takes writes again, and the name is free', async () => {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  await ledger.append(stream, 0, [ev.nameReserved(c)]);
  const diskFull = new Error('IO error: 000003.log: No space left on device');
  const steps = [{ name: 'SnapshotPrepared', run: async () => [ev.snapshotPrepared(c)], undo: async () => undefined }];
  // The step fails; then the Compensated append fails too.
  const append = ledger.append.bind(ledger);
  let refusals = 2;
  ledger.append = async (s, v, events) => {
    if (events[0]?.type === 'Compensated' && refusals-- > 0) throw diskFull;
    return append(s, v, events);
  };
  await assert.rejects(
    runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 1,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      steps,
      failpoints: failAt('CreateContainer.SnapshotPrepared'),
      compensatedRetryMs: 10,
    }),
    /failpoint CreateContainer.SnapshotPrepared/,
  );
  assert.deepEqual(
    (await log.readStream(stream)).map((e) => e.type),
    ['NameReserved'],
    'nothing recorded yet',
  );
  assert.equal(ledger.projections.containerNames.get(c.name)?.holderId, c.id, 'the name is held meanwhile');
  const deadline = Date.now() + 2_000;
  while ((await log.readStream(stream)).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(
    (await log.readStream(stream)).map((e) => e.type),
    ['NameReserved', 'Compensated'],
  );
  assert.equal(refusals, -1, 'refused twice, then written by the third attempt');
  assert.equal(ledger.projections.containerNames.get(c.name), undefined, 'the name is free');
});

it('never begins a stream with a later Compensated when the saga wrote nothing', async () => {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  const append = ledger.append.bind(ledger);
  let attempts = 0;
  ledger.append = async (s, v, events) => {
    attempts++;
    if (attempts <= 2) throw new Error('No space left on device');
    return append(s, v, events);
  };
  const steps = [
    { name: 'NameReserved', pure: true, run: async () => [ev.nameReserved(c)] },
    { name: 'Directories', run: async () => undefined, undo: async () => undefined },
  ];
  await assert.rejects(
    runSaga({
      operation: 'CreateContainer',
      ledger,
      stream,
      version: 0,
      correlationId: 'req-1',
      ctx: undefined,
      name: c.name,
      steps,
      compensatedRetryMs: 5,
    }),
    /No space left/,
  );
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(attempts, 2, 'the first append and one Compensated, no retry');
  assert.deepEqual(await log.readStream(stream), []);
});
