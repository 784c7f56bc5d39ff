import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { UnsafeLayerEntryError, type ExtractTarget } from '../../src/adapters/images/layer-extractor.js';
import { openLayerJob, stopLayerWorker } from '../../src/adapters/images/layer-unpacker.js';
import { CorruptTarError, UnsupportedTarEntryError } from '../../src/adapters/images/tar-reader.js';
import { tarArchive, type TarSpec } from '../support/tar-writer.js';
import { until } from '../support/until.js';

/*
 * A layer through the layer worker thread (src/adapters/images/layer-unpacker.ts): the
 * diff id and files it writes, the error classes that cross back from the thread, how
 * far it reads ahead of an extract that has not started, and a worker that dies.
 */

let work: string;
let n = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cri-ledger-unpacker-'));
});

after(async () => {
  await stopLayerWorker();
  await rm(work, { recursive: true, force: true });
});

async function target(): Promise<ExtractTarget> {
  const root = join(work, String(++n));
  await mkdir(root);
  return { root, lowerDirs: [], whiteouts: 'overlay' };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** `bytes` in pieces of `piece`, as a registry response arrives. */
function blobOf(bytes: Buffer, piece = 64 * 1024): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += piece) pieces.push(bytes.subarray(at, at + piece));
  return Readable.from(pieces);
}

const FILES: TarSpec[] = [
  { name: 'etc/', type: '5', mode: 0o755 },
  { name: 'etc/motd', data: 'hello from the worker\n', mode: 0o644, uid: 12, gid: 34 },
  { name: 'bin/big', data: Buffer.alloc(3 * 1024 * 1024 + 17, 7), mode: 0o755 },
];

describe('layer jobs in the worker thread', () => {
  it('extracts a gzip layer and returns the digest of its tar as the diff id', async () => {
    const tar = tarArchive(FILES);
    const t = await target();
    let seen = 0;
    const compressed = gzipSync(tar);
    const job = openLayerJob(blobOf(compressed), 'gzip', (done) => (seen = done));
    assert.equal(await job.extract(t), sha256(tar));
    job.destroy();
    assert.equal(seen, compressed.length);
    assert.equal(readFileSync(join(t.root, 'etc/motd'), 'utf8'), 'hello from the worker\n');
    const motd = statSync(join(t.root, 'etc/motd'));
    assert.deepEqual([motd.uid, motd.gid, motd.mode & 0o7777], [12, 34, 0o644]);
    assert.equal(statSync(join(t.root, 'bin/big')).size, 3 * 1024 * 1024 + 17);
  });

  it('extracts an uncompressed layer', async () => {
    const tar = tarArchive(FILES);
    const t = await target();
    const job = openLayerJob(blobOf(tar), 'none', () => undefined);
    assert.equal(await job.extract(t), sha256(tar));
    assert.ok(existsSync(join(t.root, 'bin/big')));
  });

  it('brings the extractor and tar reader error classes back across the thread', async () => {
    const unsafe = openLayerJob(blobOf(tarArchive([{ name: '../escape', data: 'x' }])), 'none', () => undefined);
    await assert.rejects(
      unsafe.extract(await target()),
      (e: unknown) => e instanceof UnsafeLayerEntryError && e.path === '../escape' && /escape/.test(e.message),
    );

    const sparse = openLayerJob(
      blobOf(tarArchive([{ name: 'sparse', type: 'S', data: 'x' }])),
      'none',
      () => undefined,
    );
    await assert.rejects(sparse.extract(await target()), UnsupportedTarEntryError);

    const truncated = tarArchive(FILES).subarray(0, 700);
    const corrupt = openLayerJob(blobOf(truncated), 'none', () => undefined);
    await assert.rejects(corrupt.extract(await target()), CorruptTarError);

    const garbage = openLayerJob(blobOf(Buffer.from('this is not gzip at all')), 'gzip', () => undefined);
    await assert.rejects(
      garbage.extract(await target()),
      (e: NodeJS.ErrnoException) => typeof e.code === 'string' && e.code.startsWith('Z_'),
    );
  });

  it("rejects with the blob's own error (a digest mismatch) rather than the decoder's, after the whole blob was read", async () => {
    const mismatch = new Error('blob sha256:abc: digest mismatch');
    let seen = 0;
    // Garbage that gunzip refuses at once, then more bytes, then the blob's verdict at its end.
    const blob = Readable.from(
      (async function* () {
        yield Buffer.from('not gzip');
        yield Buffer.alloc(2 * 1024 * 1024, 1);
        throw mismatch;
      })(),
    );
    const job = openLayerJob(blob, 'gzip', (done) => (seen = done));
    await assert.rejects(job.extract(await target()), (e) => e === mismatch);
    assert.equal(seen, 8 + 2 * 1024 * 1024);
  });

  it('reads a bounded amount ahead of an extract that has not begun, and stops when destroyed', async () => {
    const tar = tarArchive([{ name: 'huge', data: Buffer.alloc(96 * 1024 * 1024, 3) }]);
    let seen = 0;
    const job = openLayerJob(blobOf(tar, 1024 * 1024), 'none', (done) => (seen = done));
    // It reads until the worker's 32 MiB of decoded tar and the 4 MiB in flight are full.
    let last = -1;
    await until('the read-ahead to stop', async () => {
      const settled = seen === last && seen > 0;
      last = seen;
      await new Promise((r) => setTimeout(r, 50));
      return settled;
    });
    assert.ok(seen >= 32 * 1024 * 1024, `read ${seen} bytes ahead`);
    assert.ok(seen <= 48 * 1024 * 1024, `read ${seen} bytes ahead`);
    job.destroy(new Error('the pull stopped'));
    const t = await target();
    await assert.rejects(job.extract(t));
    assert.deepEqual(await readdir(t.root), []);
  });

  it('fails the jobs of a worker that dies, and the next job gets a new worker', async () => {
    const tar = tarArchive([{ name: 'huge', data: Buffer.alloc(64 * 1024 * 1024, 5) }]);
    const job = openLayerJob(blobOf(tar, 1024 * 1024), 'none', () => undefined);
    const extracting = job.extract(await target());
    await new Promise((r) => setTimeout(r, 20));
    await stopLayerWorker();
    await assert.rejects(extracting, /layer worker exited/);

    const small = tarArchive(FILES);
    const again = openLayerJob(blobOf(small), 'none', () => undefined);
    assert.equal(await again.extract(await target()), sha256(small));
  });
});
