import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  checkLogPathOnHost,
  checkMountSource,
  createHostDirectory,
  MAX_SECCOMP_PROFILE_BYTES,
  readLocalhostProfile,
  resolveMountSource,
} from '../../src/adapters/fs/host-paths.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const refused = (fn: () => unknown, field: string, message: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof InvalidArgumentError && e.field === field && message.test(e.message));

describe('host paths against planted and swapped symlinks (real file system)', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cri-ledger-host-paths-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('pins a mount host path by its real path and inode, and refuses it once swapped to a symlink', () => {
    const data = join(dir, 'data');
    mkdirSync(data);
    symlinkSync(data, join(dir, 'link'));
    const { path, pin } = resolveMountSource(join(dir, 'link'), 'config.mounts[0].host_path');
    assert.equal(path, data, 'the spec records the real path');
    checkMountSource(pin);
    renameSync(data, join(dir, 'data.old'));
    symlinkSync('/', data);
    refused(() => checkMountSource(pin), 'config.mounts[0].host_path', /no longer the directory/);
    rmSync(data);
    mkdirSync(data);
    refused(() => checkMountSource(pin), 'config.mounts[0].host_path', /was replaced/);
  });

  it('makes a missing host path and its missing parents 0755 whatever the umask, outermost first, and pins what it made', () => {
    const target = join(dir, 'made', 'a', 'b');
    const field = 'config.mounts[2].host_path';
    const { path, pin } = resolveMountSource(target, field);
    assert.equal(path, target, 'the spec mounts the path as written');
    assert.equal(pin.absent, true);
    const umask = process.umask(0o077);
    let made;
    try {
      made = createHostDirectory(pin);
    } finally {
      process.umask(umask);
    }
    assert.deepEqual(made.created, [join(dir, 'made'), join(dir, 'made', 'a'), target]);
    assert.equal(made.mode, 0o755);
    for (const d of made.created) assert.equal(statSync(d).mode & 0o7777, 0o755, d);
    assert.equal(made.pin.absent, undefined);
    assert.equal(made.pin.ino, statSync(target).ino);
    checkMountSource(made.pin);
    // Made again (a retry): nothing new, the same pin.
    assert.deepEqual(createHostDirectory(pin).created, []);
    rmSync(target, { recursive: true });
    symlinkSync('/', target);
    refused(() => checkMountSource(made.pin), field, /is a symlink/);
  });

  it('refuses, before making anything, a missing host path under a symlink or a file', () => {
    const real = join(dir, 'real-parent');
    mkdirSync(real);
    symlinkSync(real, join(dir, 'linked-parent'));
    refused(
      () => resolveMountSource(join(dir, 'linked-parent', 'new', 'deeper'), 'f'),
      'f',
      /does not exist and cannot be made: .*linked-parent is a symlink/,
    );
    writeFileSync(join(dir, 'a-file'), '');
    refused(
      () => resolveMountSource(join(dir, 'a-file', 'new'), 'f'),
      'f',
      /cannot be made: .*a-file is not a directory/,
    );
    assert.equal(existsSync(join(real, 'new')), false);
    // Planted between the check and the making: still not followed.
    const { pin } = resolveMountSource(join(dir, 'planted', 'new'), 'f');
    symlinkSync(real, join(dir, 'planted'));
    refused(() => createHostDirectory(pin), 'f', /could not be made: .*planted is a symlink/);
    assert.equal(existsSync(join(real, 'new')), false);
  });

  it('leaves a missing host path as given, and refuses it at start if it then leads through a symlink', () => {
    const missing = join(dir, 'missing');
    const { path, pin } = resolveMountSource(missing, 'config.mounts[1].host_path');
    assert.equal(path, missing);
    assert.equal(pin.absent, true);
    checkMountSource(pin);
    mkdirSync(missing);
    checkMountSource(pin);
    rmSync(missing, { recursive: true });
    symlinkSync('/', missing);
    refused(
      () => checkMountSource(pin),
      'config.mounts[1].host_path',
      /did not exist at CreateContainer and now leads through a symlink to \//,
    );
  });

  it('refuses a log path that reaches outside the log directory through a symlink', () => {
    const logs = join(dir, 'logs');
    mkdirSync(join(logs, 'app'), { recursive: true });
    symlinkSync('/etc', join(logs, 'evil'));
    symlinkSync('/etc/passwd', join(logs, 'app', '0.log'));
    checkLogPathOnHost(logs, join(logs, 'app', '1.log'), 'config.log_path');
    checkLogPathOnHost(logs, join(logs, 'new', 'deeper', '0.log'), 'config.log_path');
    refused(
      () => checkLogPathOnHost(logs, join(logs, 'evil', 'cron.d', 'x'), 'config.log_path'),
      'config.log_path',
      /outside the log directory/,
    );
    refused(
      () => checkLogPathOnHost(logs, join(logs, 'app', '0.log'), 'config.log_path'),
      'config.log_path',
      /is a symlink/,
    );
  });

  it('reads a localhost profile only from a regular file, not through a symlink, a FIFO or an oversized file', () => {
    const good = join(dir, 'good.json');
    writeFileSync(good, '{"defaultAction":"SCMP_ACT_ALLOW"}');
    assert.equal(readLocalhostProfile(good, 'f'), '{"defaultAction":"SCMP_ACT_ALLOW"}');
    symlinkSync('/etc/shadow', join(dir, 'shadow.json'));
    refused(() => readLocalhostProfile(join(dir, 'shadow.json'), 'f'), 'f', /is a symlink/);
    execFileSync('mkfifo', [join(dir, 'fifo.json')]);
    refused(() => readLocalhostProfile(join(dir, 'fifo.json'), 'f'), 'f', /not a regular file/);
    writeFileSync(join(dir, 'big.json'), Buffer.alloc(MAX_SECCOMP_PROFILE_BYTES + 1, 0x20));
    refused(() => readLocalhostProfile(join(dir, 'big.json'), 'f'), 'f', /larger than/);
    refused(() => readLocalhostProfile(dir, 'f'), 'f', /not a regular file/);
  });
});
