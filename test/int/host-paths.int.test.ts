import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkLogPathOnHost, checkMountSource, MAX_SECCOMP_PROFILE_BYTES, readLocalhostProfile, resolveMountSource } from '../../src/adapters/fs/host-paths.js';
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
    refused(() => checkMountSource(pin), 'config.mounts[1].host_path', /did not exist at CreateContainer and now leads through a symlink to \//);
  });

  it('refuses a log path that reaches outside the log directory through a symlink', () => {
    const logs = join(dir, 'logs');
    mkdirSync(join(logs, 'app'), { recursive: true });
    symlinkSync('/etc', join(logs, 'evil'));
    symlinkSync('/etc/passwd', join(logs, 'app', '0.log'));
    checkLogPathOnHost(logs, join(logs, 'app', '1.log'), 'config.log_path');
    checkLogPathOnHost(logs, join(logs, 'new', 'deeper', '0.log'), 'config.log_path');
    refused(() => checkLogPathOnHost(logs, join(logs, 'evil', 'cron.d', 'x'), 'config.log_path'), 'config.log_path', /outside the log directory/);
    refused(() => checkLogPathOnHost(logs, join(logs, 'app', '0.log'), 'config.log_path'), 'config.log_path', /is a symlink/);
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
