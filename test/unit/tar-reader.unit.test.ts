import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CorruptTarError,
  readTar,
  UnsupportedTarEntryError,
  type TarEntry,
} from '../../src/adapters/images/tar-reader.js';
import { tarArchive } from '../support/tar-writer.js';

/** The archive's bytes in pieces of `size`, as a stream would hand them on. */
async function* piecesOf(archive: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < archive.length; at += size) yield archive.subarray(at, at + size);
}

async function read(archive: Buffer, pieceSize = 7): Promise<Array<{ entry: TarEntry; data: string }>> {
  const out: Array<{ entry: TarEntry; data: string }> = [];
  for await (const { entry, body } of readTar(piecesOf(archive, pieceSize))) {
    const chunks: Buffer[] = [];
    for await (const piece of body) chunks.push(piece);
    out.push({ entry, data: Buffer.concat(chunks).toString() });
  }
  return out;
}

describe('readTar', () => {
  it('reads files, directories, links and devices with their attributes, whatever the piece size', async () => {
    const archive = tarArchive([
      { name: 'etc/', type: '5', mode: 0o755 },
      {
        name: 'etc/passwd',
        data: 'root:x:0:0::/root:/bin/sh\n',
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        mtime: 1234567890,
      },
      { name: 'bin/sh', type: '2', linkname: '/bin/busybox' },
      { name: 'etc/passwd-', type: '1', linkname: 'etc/passwd' },
      { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'run/fifo', type: '6' },
    ]);
    for (const size of [1, 7, 512, 100_000]) {
      const entries = await read(archive, size);
      assert.deepEqual(
        entries.map(({ entry, data }) => [
          entry.path,
          entry.type,
          entry.mode.toString(8),
          entry.uid,
          entry.gid,
          entry.linkname,
          data,
        ]),
        [
          ['etc/', 'dir', '755', 0, 0, '', ''],
          ['etc/passwd', 'file', '4755', 1000, 1001, '', 'root:x:0:0::/root:/bin/sh\n'],
          ['bin/sh', 'symlink', '644', 0, 0, '/bin/busybox', ''],
          ['etc/passwd-', 'hardlink', '644', 0, 0, 'etc/passwd', ''],
          ['dev/null', 'char', '666', 0, 0, '', ''],
          ['run/fifo', 'fifo', '644', 0, 0, '', ''],
        ],
      );
      assert.equal(entries[1]!.entry.mtime, 1234567890);
      assert.deepEqual([entries[4]!.entry.devmajor, entries[4]!.entry.devminor], [1, 3]);
    }
  });

  it('applies PAX records: long paths, numbers, and xattrs as raw bytes', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const capability = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0xff, 0x0a, 0x3d]);
    const [entry] = await read(
      tarArchive([
        {
          name: 'short',
          data: 'x',
          pax: {
            path: long,
            uid: '3000000000',
            mtime: '1600000000.5',
            'SCHILY.xattr.security.capability': capability,
            'SCHILY.xattr.user.note': 'hi',
          },
        },
      ]),
    );
    assert.equal(entry!.entry.path, long);
    assert.equal(entry!.entry.uid, 3000000000);
    assert.equal(entry!.entry.mtime, 1600000000.5);
    assert.deepEqual(entry!.entry.xattrs.get('security.capability'), capability);
    assert.equal(entry!.entry.xattrs.get('user.note')?.toString(), 'hi');
  });

  it('takes the next entry right when a body is left unread', async () => {
    const archive = tarArchive([
      { name: 'big', data: Buffer.alloc(5000, 'a') },
      { name: 'after', data: 'b' },
    ]);
    const names: string[] = [];
    let afterData = '';
    for await (const { entry, body } of readTar(piecesOf(archive, 300))) {
      names.push(entry.path);
      if (entry.path === 'big') {
        for await (const piece of body) {
          assert.ok(piece.length > 0);
          break; // read one piece only
        }
      } else for await (const piece of body) afterData += piece.toString();
    }
    assert.deepEqual(names, ['big', 'after']);
    assert.equal(afterData, 'b');
  });

  it('refuses a header with a bad checksum', async () => {
    await assert.rejects(read(tarArchive([{ name: 'a', data: 'x', badChecksum: true }])), CorruptTarError);
  });

  it('refuses an archive cut off inside a body', async () => {
    const archive = tarArchive([{ name: 'a', data: Buffer.alloc(2000, 'x') }], { end: false });
    await assert.rejects(read(archive.subarray(0, 1024)), CorruptTarError);
  });

  it('refuses a GNU sparse file and unknown types as unsupported, not as corrupt', async () => {
    await assert.rejects(read(tarArchive([{ name: 'sparse', type: 'S', data: 'x' }])), UnsupportedTarEntryError);
    await assert.rejects(
      read(tarArchive([{ name: 'a', data: 'x', pax: { 'GNU.sparse.major': '1' } }])),
      UnsupportedTarEntryError,
    );
  });

  it('ends at the end-of-archive blocks, and at a clean end without them', async () => {
    assert.deepEqual(
      (await read(tarArchive([{ name: 'a', data: 'x' }]))).map((e) => e.entry.path),
      ['a'],
    );
    assert.deepEqual(
      (await read(tarArchive([{ name: 'a', data: 'x' }], { end: false }))).map((e) => e.entry.path),
      ['a'],
    );
  });
});
