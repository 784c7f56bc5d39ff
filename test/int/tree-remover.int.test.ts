import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { mkfifo } from '../../src/adapters/native/syscalls.js';
import { removeTrees } from '../../src/adapters/fs/tree-remover.js';

/* Directory trees removed on the worker thread, as a container's and a pod's dirs are. */

const base = mkdtempSync(join(tmpdir(), 'cri-ledger-tree-remover-'));
after(() => rmSync(base, { recursive: true, force: true }));

describe('removeTrees', () => {
  it('removes each tree with what is under it, FIFOs too, and a path that is not there is fine', async () => {
    const a = join(base, 'a');
    const b = join(base, 'b');
    mkdirSync(join(a, 'x', 'y'), { recursive: true });
    writeFileSync(join(a, 'x', 'y', 'file'), 'data');
    mkfifo(join(a, 'x', 'stdout'), 0o600);
    mkdirSync(b);
    await removeTrees([a, join(base, 'never-made'), b]);
    assert.equal(existsSync(a), false);
    assert.equal(existsSync(b), false);
  });

  it('rejects with the error and its code, and the next removal still works', async () => {
    const error = (await removeTrees(['/proc/self/status']).then(
      () => assert.fail('removed a file of /proc'),
      (e: unknown) => e,
    )) as NodeJS.ErrnoException;
    assert.equal(error.code, 'ENOTDIR');
    const c = join(base, 'c');
    mkdirSync(c);
    await removeTrees([c]);
    assert.equal(existsSync(c), false);
  });

  it('runs many removals at once, each answered', async () => {
    const dirs = Array.from({ length: 50 }, (_, i) => join(base, `many-${i}`));
    for (const dir of dirs) mkdirSync(join(dir, 'inner'), { recursive: true });
    await Promise.all(dirs.map((dir) => removeTrees([dir])));
    assert.equal(dirs.filter((dir) => existsSync(dir)).length, 0);
  });
});
