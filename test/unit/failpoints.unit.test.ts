import assert from 'node:assert/strict';
import { it } from 'node:test';
import { envFailpoints, FailpointError, parseFailpoints } from '../../src/adapters/failpoints/env-failpoints.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

it('parses error, delay and crash failpoints, and names a malformed one', () => {
  const points = parseFailpoints(
    'CreateContainer.SnapshotPrepared=error, RunPodSandbox.SandboxReady=delay(25),StartContainer.Started=crash',
  );
  assert.deepEqual(points.get('CreateContainer.SnapshotPrepared'), { kind: 'error' });
  assert.deepEqual(points.get('RunPodSandbox.SandboxReady'), { kind: 'delay', ms: 25 });
  assert.deepEqual(points.get('StartContainer.Started'), { kind: 'crash' });
  assert.equal(parseFailpoints(undefined).size, 0);
  assert.throws(
    () => parseFailpoints('CreateContainer=error'),
    (e: unknown) => e instanceof InvalidArgumentError && /CreateContainer=error/.test(e.message),
  );
});

it('fails or delays only the named point', async () => {
  const failpoints = envFailpoints({
    CRI_LEDGER_FAILPOINTS: 'CreateContainer.SnapshotPrepared=error,CreateContainer.SpecGenerated=delay(30)',
  });
  await assert.rejects(failpoints.hit('CreateContainer.SnapshotPrepared'), FailpointError);
  await failpoints.hit('CreateContainer.ContainerCreated');
  const started = Date.now();
  await failpoints.hit('CreateContainer.SpecGenerated');
  assert.ok(Date.now() - started >= 25);
});
