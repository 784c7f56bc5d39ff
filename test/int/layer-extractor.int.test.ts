import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { extractLayer, UnsafeLayerEntryError, type ExtractTarget } from '../../src/adapters/images/layer-extractor.js';
import { readTar } from '../../src/adapters/images/tar-reader.js';
import { lgetxattr } from '../../src/adapters/native/syscalls.js';
import { tarArchive, type TarSpec } from '../support/tar-writer.js';

/*
 * The layer extractor on a real filesystem (a temp dir as the snapshot's upper dir):
 * attributes, overlayfs whiteouts, and every way a hostile layer could write outside.
 */

let work: string;
let n = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cri-ledger-extract-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function* once(archive: Buffer): AsyncGenerator<Buffer> {
  yield archive;
}

/** A fresh root (and lower dir) for one test. */
async function target(o: Partial<ExtractTarget> = {}): Promise<ExtractTarget & { outside: string }> {
  const dir = join(work, String(++n));
  await mkdir(join(dir, 'root'), { recursive: true });
  await mkdir(join(dir, 'outside'));
  return { root: join(dir, 'root'), lowerDirs: [], whiteouts: 'overlay', outside: join(dir, 'outside'), ...o };
}

function extract(entries: TarSpec[], t: ExtractTarget): Promise<void> {
  return extractLayer(readTar(once(tarArchive(entries))), t);
}

function xattr(path: string, name: string): string | undefined {
  return lgetxattr(path, name)?.toString();
}

describe('extractLayer', () => {
  it('writes files, dirs, links and devices with their owner, mode, time and xattrs', async () => {
    const t = await target();
    await extract(
      [
        { name: './', type: '5', mode: 0o755 },
        { name: 'usr/', type: '5', mode: 0o750, uid: 5, gid: 6, mtime: 1_500_000_000 },
        {
          name: 'usr/bin/ping',
          data: 'ELF',
          mode: 0o4755,
          uid: 0,
          gid: 0,
          mtime: 1_400_000_000,
          pax: { 'SCHILY.xattr.user.origin': 'layer' },
        },
        { name: 'usr/bin/link', type: '1', linkname: 'usr/bin/ping' },
        { name: 'bin', type: '2', linkname: 'usr/bin', uid: 7, gid: 8 },
        { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666 },
        { name: 'run/pipe', type: '6', mode: 0o600 },
      ],
      t,
    );
    const usr = statSync(join(t.root, 'usr'));
    assert.deepEqual([usr.mode & 0o7777, usr.uid, usr.gid, usr.mtimeMs / 1000], [0o750, 5, 6, 1_500_000_000]);
    const ping = statSync(join(t.root, 'usr/bin/ping'));
    assert.equal(readFileSync(join(t.root, 'usr/bin/ping'), 'utf8'), 'ELF');
    // The setuid bit survives the chown that precedes the chmod.
    assert.equal(ping.mode & 0o7777, 0o4755);
    assert.equal(ping.mtimeMs / 1000, 1_400_000_000);
    assert.equal(statSync(join(t.root, 'usr/bin/link')).ino, ping.ino);
    assert.equal(readlinkSync(join(t.root, 'bin')), 'usr/bin');
    assert.deepEqual([lstatSync(join(t.root, 'bin')).uid, lstatSync(join(t.root, 'bin')).gid], [7, 8]);
    const dev = statSync(join(t.root, 'dev/null'));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, (1 << 8) | 3);
    assert.ok(statSync(join(t.root, 'run/pipe')).isFIFO());
    assert.equal(xattr(join(t.root, 'usr/bin/ping'), 'user.origin'), 'layer');
  });

  it('turns OCI whiteouts into overlayfs whiteouts in an upper dir', async () => {
    const t = await target();
    await extract(
      [
        { name: 'etc/.wh..wh..opq', data: '' },
        { name: 'etc/fresh', data: 'new' },
        { name: '.wh.gone', data: '', uid: 3, gid: 4 },
      ],
      t,
    );
    const gone = lstatSync(join(t.root, 'gone'));
    assert.ok(gone.isCharacterDevice());
    assert.equal(gone.rdev, 0);
    assert.equal(xattr(join(t.root, 'etc'), 'trusted.overlay.opaque'), 'y');
    assert.equal(readFileSync(join(t.root, 'etc/fresh'), 'utf8'), 'new');
    assert.deepEqual((await readdir(t.root)).sort(), ['etc', 'gone']);
  });

  it('drops whiteouts when nothing is below', async () => {
    const t = await target({ whiteouts: 'none' });
    await extract(
      [
        { name: '.wh.gone', data: '' },
        { name: 'etc/.wh..wh..opq', data: '' },
      ],
      t,
    );
    assert.deepEqual(await readdir(t.root), ['etc']);
    assert.equal(xattr(join(t.root, 'etc'), 'trusted.overlay.opaque'), undefined);
  });

  it('gives a parent dir the layer does not list the owner and mode it has below', async () => {
    const lower = join(work, `lower-${++n}`);
    await mkdir(join(lower, 'var/cache'), { recursive: true, mode: 0o711 });
    await chown(join(lower, 'var/cache'), 42, 43);
    execFileSync('chmod', ['0711', join(lower, 'var/cache')]);
    const t = await target({ lowerDirs: [lower] });
    await extract(
      [
        { name: 'var/cache/file', data: 'x' },
        { name: 'new/dir/file', data: 'y' },
      ],
      t,
    );
    const cache = statSync(join(t.root, 'var/cache'));
    assert.deepEqual([cache.mode & 0o7777, cache.uid, cache.gid], [0o711, 42, 43]);
    assert.equal(statSync(join(t.root, 'new/dir')).mode & 0o7777, 0o755);
  });

  it('replaces an entry by a later one of another kind, and a dir by a file', async () => {
    const t = await target();
    await extract(
      [
        { name: 'a/b/c', data: 'deep' },
        { name: 'a', data: 'now a file' },
        { name: 'l', type: '2', linkname: 'x' },
        { name: 'l', type: '5' },
      ],
      t,
    );
    assert.equal(readFileSync(join(t.root, 'a'), 'utf8'), 'now a file');
    assert.ok(lstatSync(join(t.root, 'l')).isDirectory());
  });

  describe('refuses to write outside the root', () => {
    it('a path with ..', async () => {
      const t = await target();
      await assert.rejects(extract([{ name: '../outside/evil', data: 'x' }], t), UnsafeLayerEntryError);
      await assert.rejects(extract([{ name: 'a/../../outside/evil', data: 'x' }], t), /climbs out with \.\./);
      assert.deepEqual(await readdir(t.outside), []);
    });

    it('an absolute path stays under the root', async () => {
      const t = await target();
      await extract([{ name: '/etc/hosts', data: 'inside' }], t);
      assert.equal(readFileSync(join(t.root, 'etc/hosts'), 'utf8'), 'inside');
    });

    it('an entry under a symlink the layer planted', async () => {
      const t = await target();
      await assert.rejects(
        extract(
          [
            { name: 'escape', type: '2', linkname: t.outside },
            { name: 'escape/evil', data: 'x' },
          ],
          t,
        ),
        /goes through the symlink "escape"/,
      );
      assert.deepEqual(await readdir(t.outside), []);
    });

    it('a symlink already in the upper dir', async () => {
      const t = await target();
      await symlink(t.outside, join(t.root, 'planted'));
      await assert.rejects(extract([{ name: 'planted/evil', data: 'x' }], t), UnsafeLayerEntryError);
      assert.deepEqual(await readdir(t.outside), []);
    });

    it('a file written over a symlink replaces the link, never its target', async () => {
      const t = await target();
      await writeFile(join(t.outside, 'victim'), 'untouched');
      await extract(
        [
          { name: 'f', type: '2', linkname: join(t.outside, 'victim') },
          { name: 'f', data: 'replaced' },
        ],
        t,
      );
      assert.equal(readFileSync(join(t.outside, 'victim'), 'utf8'), 'untouched');
      assert.ok(lstatSync(join(t.root, 'f')).isFile());
    });

    it('a hard link to a file outside, or to a name the layer lacks', async () => {
      const t = await target();
      await writeFile(join(t.outside, 'secret'), 's');
      await assert.rejects(extract([{ name: 'h', type: '1', linkname: '../outside/secret' }], t), /climbs out/);
      await assert.rejects(extract([{ name: 'h', type: '1', linkname: 'nowhere' }], t), /not a file of this layer/);
      await assert.rejects(
        extract(
          [
            { name: 'x', type: '2', linkname: t.outside },
            { name: 'h', type: '1', linkname: 'x/secret' },
          ],
          t,
        ),
        /symlink "x"/,
      );
      assert.equal(existsSync(join(t.root, 'h')), false);
      assert.equal(statSync(join(t.outside, 'secret')).nlink, 1);
    });
  });
});
