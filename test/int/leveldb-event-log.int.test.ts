import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { Level } from 'level';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import { CorruptRecordError, LedgerLockedError, UnknownEventError } from '../../src/domain/errors.js';
import { describeEventLog } from '../support/event-log-contract.js';
import { container, ev, streams } from '../support/fixtures.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'cri-ledger-log-'));
}

describeEventLog('leveldb', async () => {
  const dir = await tempDir();
  const log = await LevelDbEventLog.open({ dir, node: 'test-node' });
  return { log, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

it('keeps every appended event, the head and stream versions across a reopen', () =>
  withDir(async (dir) => {
    const c = container('a');
    const first = await LevelDbEventLog.open({ dir, node: 'n' });
    await first.append(streams.container(c), 0, [ev.nameReserved(c), ev.specGenerated()]);
    await first.writeCursor('relay', 1);
    await first.close();
    const second = await LevelDbEventLog.open({ dir, node: 'n' });
    try {
      assert.equal(second.head(), 2);
      assert.equal(await second.streamVersion(streams.container(c)), 2);
      assert.equal(await second.readCursor('relay'), 1);
      const [third] = await second.append(streams.container(c), 2, [ev.snapshotPrepared(c)]);
      assert.equal(third!.seq, 3);
      assert.equal(third!.version, 3);
    } finally {
      await second.close();
    }
  }));

it('fails fast with LedgerLockedError when the directory is already open', () =>
  withDir(async (dir) => {
    const first = await LevelDbEventLog.open({ dir, node: 'n' });
    try {
      await assert.rejects(LevelDbEventLog.open({ dir, node: 'n' }), (error: unknown) => {
        assert.ok(error instanceof LedgerLockedError);
        assert.match(error.message, /held by another cri-ledger process/);
        return true;
      });
    } finally {
      await first.close();
    }
  }));

async function tamper(dir: string, key: string, value: string): Promise<void> {
  const db = new Level<string, string>(dir);
  await db.open();
  await db.put(key, value);
  await db.close();
}

it('names the seq of a record that is not valid JSON', () =>
  withDir(async (dir) => {
    const c = container('a');
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    await log.append(streams.container(c), 0, [ev.nameReserved(c), ev.specGenerated(), ev.snapshotPrepared(c)]);
    await log.close();
    await tamper(dir, 'e!0000000000000002', '{"seq":2,"garbage');
    const reopened = await LevelDbEventLog.open({ dir, node: 'n' });
    try {
      await assert.rejects(
        (async () => {
          for await (const _ of reopened.readAll()) continue;
        })(),
        (error: unknown) => error instanceof CorruptRecordError && error.seq === 2 && /seq 2/.test(error.message),
      );
    } finally {
      await reopened.close();
    }
  }));

it('refuses an unknown event type, naming it, instead of skipping it', () =>
  withDir(async (dir) => {
    const c = container('a');
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    const [e] = await log.append(streams.container(c), 0, [ev.nameReserved(c)]);
    await log.close();
    await tamper(dir, 'e!0000000000000001', JSON.stringify({ ...e, type: 'ContainerTeleported' }));
    const reopened = await LevelDbEventLog.open({ dir, node: 'n' }).catch((error: unknown) => error);
    assert.ok(reopened instanceof UnknownEventError, String(reopened));
    assert.match(reopened.message, /ContainerTeleported v1 at seq 1/);
  }));

it('reports a missing record in the seq range as corruption at that seq', () =>
  withDir(async (dir) => {
    const c = container('a');
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    await log.append(streams.container(c), 0, [ev.nameReserved(c), ev.specGenerated(), ev.snapshotPrepared(c)]);
    await log.close();
    const db = new Level<string, string>(dir);
    await db.open();
    await db.del('e!0000000000000002');
    await db.close();
    const reopened = await LevelDbEventLog.open({ dir, node: 'n' });
    try {
      const seqs: number[] = [];
      await assert.rejects(
        (async () => {
          for await (const r of reopened.readRecords()) seqs.push(r.seq);
        })(),
        (error: unknown) => error instanceof CorruptRecordError && error.seq === 2,
      );
      assert.deepEqual(seqs, [1]);
    } finally {
      await reopened.close();
    }
  }));
