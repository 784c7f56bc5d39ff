import assert from 'node:assert/strict';
import { lstat, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bindNewNetns, mkfifo, mount, mountFlags, umount } from '../../src/adapters/native/syscalls.js';
import { parseMountInfo } from '../../src/adapters/netns/netns.js';

const mountedAt = async (path: string): Promise<string | undefined> =>
  parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8')).findLast((m) => m.mountPoint === path)?.fsType;

describe('native system calls', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-native-'));
  });
  after(async () => {
    for (const name of ['shm', 'ns']) await umount(join(dir, name), { detach: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('makes a FIFO with the mode asked for, and fails with EEXIST on an existing path', async () => {
    const path = join(dir, 'fifo');
    mkfifo(path, 0o600);
    const s = await lstat(path);
    assert.ok(s.isFIFO());
    assert.equal(s.mode & 0o777, 0o600);
    assert.throws(
      () => mkfifo(path, 0o600),
      (e: NodeJS.ErrnoException) => e.code === 'EEXIST' && e.syscall === 'mkfifo' && e.path === path,
    );
  });

  it('refuses a path with a NUL byte instead of cutting it short', () => {
    assert.throws(() => mkfifo(join(dir, 'a\0b'), 0o600), /NUL/);
  });

  it('mounts a tmpfs with flags and data, and unmounts it', async () => {
    const target = join(dir, 'shm');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    const { MS_NOSUID, MS_NODEV, MS_NOEXEC } = mountFlags();
    await mount('shm', target, 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, 'mode=1777,size=1048576');
    assert.equal(await mountedAt(target), 'tmpfs');
    assert.equal((await stat(target)).mode & 0o7777, 0o1777);
    await umount(target);
    assert.equal(await mountedAt(target), undefined);
  });

  it('rejects with the errno name and the path when a mount fails', async () => {
    await assert.rejects(
      mount('shm', join(dir, 'missing'), 'tmpfs', 0),
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'mount',
    );
    await assert.rejects(
      umount(join(dir, 'fifo')),
      (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && e.syscall === 'umount2',
    );
  });

  it('binds a new network namespace onto a file and leaves the calling process in its own', async () => {
    const target = join(dir, 'ns');
    await writeFile(target, '');
    const before = (await stat('/proc/self/ns/net')).ino;
    await bindNewNetns(target);
    assert.equal(await mountedAt(target), 'nsfs');
    const made = (await stat(target)).ino;
    assert.notEqual(made, before);
    // Every thread of this process is still in the namespace it started in.
    for (const task of await import('node:fs/promises').then((fs) => fs.readdir('/proc/self/task'))) {
      assert.equal((await stat(`/proc/self/task/${task}/ns/net`)).ino, before, `thread ${task} moved`);
    }
    // The namespace holds: it can be opened after the thread that made it is gone.
    await (await open(target, 'r')).close();
    await umount(target);
    assert.equal(await mountedAt(target), undefined);
  });
});
