import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

it('ends the process at once on a crash failpoint', () => {
  const script = `import('${new URL('../../src/adapters/failpoints/env-failpoints.js', import.meta.url).href}').then(async (m) => { await m.envFailpoints().hit('CreateContainer.SnapshotPrepared'); console.log('survived'); })`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, CRI_LEDGER_FAILPOINTS: 'CreateContainer.SnapshotPrepared=crash' },
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(result.signal, 'SIGKILL');
  assert.doesNotMatch(result.stdout, /survived/);
});
