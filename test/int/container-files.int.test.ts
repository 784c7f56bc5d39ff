import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HostContainerFiles } from '../../src/adapters/fs/container-files.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { hexId } from '../support/fixtures.js';

describe('container files on the host', () => {
  let dir: string;
  let files: HostContainerFiles;
  const id = hexId('c1');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-files-'));
    files = new HostContainerFiles({ root: join(dir, 'root'), stateDir: join(dir, 'state') });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the root and volatile dirs, volume dirs under the root, and FIFOs', async () => {
    const dirs = await files.createDirs(id);
    assert.deepEqual(dirs, files.dirsFor(id));
    assert.equal((await stat(dirs.root)).mode & 0o777, 0o700);
    await files.createVolumeDirs(id, [join(dirs.root, 'volumes', 'data')]);
    assert.ok((await stat(join(dirs.root, 'volumes', 'data'))).isDirectory());
    const io = await files.createIo(id, { stdin: true, tty: false });
    for (const path of [io.stdout, io.stderr, io.stdin!]) assert.ok((await stat(path)).isFIFO(), path);
    assert.deepEqual(await files.createIo(id, { stdin: true, tty: false }), io, 'creating the IO again is idempotent');
  });

  it('joins stdout and stderr when the container has a TTY', async () => {
    const io = await files.createIo(id, { stdin: false, tty: true });
    assert.equal(io.stderr, io.stdout);
    assert.equal(io.terminal, true);
  });

  it('refuses a volume outside the container root and an id that is not one', async () => {
    await assert.rejects(files.createVolumeDirs(id, [join(dir, 'elsewhere')]), InvalidArgumentError);
    assert.throws(() => files.dirsFor('../../etc'), InvalidArgumentError);
  });

  it('removes everything, and removing again succeeds', async () => {
    const dirs = files.dirsFor(id);
    await files.removeDirs(id);
    await files.removeDirs(id);
    await assert.rejects(stat(dirs.root), { code: 'ENOENT' });
    await assert.rejects(stat(dirs.volatile), { code: 'ENOENT' });
  });
});
