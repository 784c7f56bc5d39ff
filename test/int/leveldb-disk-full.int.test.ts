import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import { LedgerDiskFullError, LedgerStorageError } from '../../src/adapters/eventlog/storage-errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { container, ev, streams } from '../support/fixtures.js';
import { mountSmallDisk, type SmallDisk } from '../support/small-disk.js';

/*
 * The ledger on a tmpfs that runs out of space. LevelDB keeps appending to its
 * write-ahead log after a write cut short by ENOSPC, and at the next open drops every
 * record after the cut one; so without the reopen in LevelDbEventLog the appends
 * acknowledged after the space came back would be gone after a restart.
 */

const DISK_BYTES = 8 * 1024 * 1024;

async function withSmallDisk(body: (disk: SmallDisk) => Promise<void>): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'cri-ledger-disk-'));
  const disk = mountSmallDisk(join(base, 'mnt'), DISK_BYTES);
  try {
    await body(disk);
  } finally {
    disk.unmount();
    await rm(base, { recursive: true, force: true });
  }
}

/** Appends one container's saga start (two events, a few hundred bytes of spec each). */
function appendOne(log: LevelDbEventLog, i: number): Promise<LedgerEvent[]> {
  const c = container(`c${i}`);
  return log.append(streams.container(c), 0, [ev.nameReserved(c), ev.specGenerated()]);
}

it('refuses appends on a full disk with LedgerDiskFullError, stores nothing of them, and keeps every later append across a reopen once space is freed', () =>
  withSmallDisk(async (disk) => {
    const dir = join(disk.dir, 'ledger');
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    const acked: LedgerEvent[] = [];
    let refused = 0;
    try {
      for (let i = 0; i < 200; i++) acked.push(...(await appendOne(log, i)));
      disk.fill();
      for (let i = 200; i < 260; i++) {
        try {
          acked.push(...(await appendOne(log, i)));
        } catch (error) {
          assert.ok(error instanceof LedgerDiskFullError, `expected LedgerDiskFullError, got ${String(error)}`);
          assert.match(error.message, new RegExp(`ledger at ${dir} is full`));
          refused++;
        }
      }
      assert.ok(refused > 0, 'the full disk refused appends');
      assert.equal(log.head(), acked.length, 'a refused append moves no seq');
      disk.free();
      for (let i = 260; i < 460; i++) acked.push(...(await appendOne(log, i)));
      await log.writeCursor('relay', 7);
    } finally {
      await log.close();
    }
    const reopened = await LevelDbEventLog.open({ dir, node: 'n' });
    try {
      const stored: LedgerEvent[] = [];
      for await (const e of reopened.readAll()) stored.push(e);
      assert.equal(stored.length, acked.length, `every acknowledged append survives the reopen (${refused} refused)`);
      assert.deepEqual(
        stored.map((e) => e.id),
        acked.map((e) => e.id),
      );
      assert.deepEqual(
        stored.map((e) => e.seq),
        stored.map((_, i) => i + 1),
      );
      assert.equal(await reopened.readCursor('relay'), 7);
    } finally {
      await reopened.close();
    }
  }));

it('fails to open on a full disk with a message that says so and names the directory', () =>
  withSmallDisk(async (disk) => {
    const dir = join(disk.dir, 'ledger');
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    for (let i = 0; i < 50; i++) await appendOne(log, i);
    await log.close();
    disk.fill();
    await assert.rejects(
      LevelDbEventLog.open({ dir, node: 'n' }),
      (error: unknown) =>
        error instanceof LedgerDiskFullError && error.message.includes(`the disk holding the ledger at ${dir} is full`),
    );
    disk.free();
    const again = await LevelDbEventLog.open({ dir, node: 'n' });
    assert.equal(again.head(), 100);
    await again.close();
  }));

it('refuses to write on after a failed write that reached the disk anyway, and a reopen loads it', async () => {
  const base = await mkdtemp(join(tmpdir(), 'cri-ledger-sync-'));
  const dir = join(base, 'ledger');
  try {
    const log = await LevelDbEventLog.open({ dir, node: 'n' });
    await appendOne(log, 0);
    // A sync that fails after the batch is on disk, as an fsync error can: LevelDB
    // cannot tell whether the record will be there at the next open.
    const db = (
      log as unknown as {
        db: { batch: () => { put: (k: string, v: string) => void; write: (o: object) => Promise<void> } };
      }
    ).db;
    const realBatch = db.batch.bind(db);
    db.batch = () => {
      const batch = realBatch();
      const write = batch.write.bind(batch);
      batch.write = async (o: object) => {
        await write(o);
        throw Object.assign(new Error('IO error: sync: Input/output error'), { code: 'LEVEL_IO_ERROR' });
      };
      return batch;
    };
    await assert.rejects(appendOne(log, 1), /could not be written: IO error: sync: Input\/output error/);
    db.batch = realBatch;
    assert.equal(log.head(), 2, 'the failed append moved no seq');
    await assert.rejects(
      appendOne(log, 2),
      (error: unknown) =>
        error instanceof LedgerStorageError &&
        /stored after all \(the log ends at seq 4, this process is at 2\); restart/.test(error.message),
    );
    await assert.rejects(appendOne(log, 3), LedgerStorageError);
    await log.close();
    const reopened = await LevelDbEventLog.open({ dir, node: 'n' });
    assert.equal(reopened.head(), 4);
    const [next] = await appendOne(reopened, 4);
    assert.equal(next!.seq, 5);
    await reopened.close();
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});
