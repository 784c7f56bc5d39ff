import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, parseSize } from '../../src/cli/config.js';
import { retentionPolicy } from '../../src/cli/retention.js';
import { DEFAULT_RETENTION_INTERVAL_MS, retentionEnabled } from '../../src/commands/retention-policy.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-retention-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('retention configuration', () => {
  it('is off by default', () => {
    const config = loadConfig({ env: {} });
    assert.deepEqual(config.retention, { maxAge: 0, maxBytes: 0, interval: DEFAULT_RETENTION_INTERVAL_MS });
    assert.equal(retentionEnabled(retentionPolicy(config)), false);
  });

  it('takes a file, then the environment, then flags, with durations and sizes in words', () => {
    const path = join(dir, 'r.yaml');
    writeFileSync(path, 'retention:\n  maxAge: 7d\n  maxBytes: 2GiB\n  interval: 30s\n');
    const fromFile = loadConfig({ file: path, env: {} }).retention;
    assert.deepEqual(fromFile, { maxAge: 7 * 86_400_000, maxBytes: 2 * 1024 ** 3, interval: 30_000 });
    const fromEnv = loadConfig({
      file: path,
      env: { CRI_LEDGER_RETENTION_MAX_AGE: '12h', CRI_LEDGER_RETENTION_MAX_BYTES: '500MB' },
    }).retention;
    assert.deepEqual(fromEnv, { maxAge: 12 * 3_600_000, maxBytes: 500_000_000, interval: 30_000 });
    const fromFlag = loadConfig({
      file: path,
      env: { CRI_LEDGER_RETENTION_MAX_AGE: '12h' },
      flags: { 'retention-max-age': '0', 'retention-max-bytes': '1048576' },
    });
    assert.equal(fromFlag.retention.maxAge, 0);
    assert.equal(fromFlag.retention.maxBytes, 1_048_576);
    assert.equal(retentionEnabled(retentionPolicy(fromFlag)), true);
  });

  it('refuses a size it cannot read, naming the key and where it came from', () => {
    assert.throws(
      () => loadConfig({ env: { CRI_LEDGER_RETENTION_MAX_BYTES: 'lots' } }),
      (error: unknown) =>
        error instanceof InvalidArgumentError &&
        /retention\.maxBytes/.test(error.message) &&
        /CRI_LEDGER_RETENTION_MAX_BYTES/.test(error.message),
    );
    assert.equal(parseSize('1.5KiB'), 1536);
    assert.equal(parseSize('800k'), 800_000);
    assert.equal(parseSize('42'), 42);
  });
});
