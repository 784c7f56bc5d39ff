import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runtimeInfoHandlers, type RuntimeInfoDeps } from '../../src/adapters/cri/runtime-info.js';

const deps = (cgroupDriver?: RuntimeInfoDeps['cgroupDriver']): RuntimeInfoDeps => ({
  apiVersion: 'v1',
  runtimeVersion: '0.0.0',
  runtimeReady: async () => ({ ready: true, reason: '', message: '' }),
  networkReady: async () => ({ ready: true, reason: '', message: '' }),
  effectiveConfig: () => ({}),
  podCidr: async () => '',
  ...(cgroupDriver ? { cgroupDriver } : {}),
});

function runtimeConfig(d: RuntimeInfoDeps): Promise<{ linux: { cgroupDriver: string } }> {
  const handler = runtimeInfoHandlers(d).RuntimeConfig as (call: unknown, cb: (e: unknown, r: unknown) => void) => void;
  return new Promise((resolve, reject) =>
    handler({ request: {} }, (e, r) => (e ? reject(e as Error) : resolve(r as { linux: { cgroupDriver: string } }))),
  );
}

describe('RuntimeConfig', () => {
  it('tells kubelet the cgroup driver the service was configured with', async () => {
    assert.equal((await runtimeConfig(deps())).linux.cgroupDriver, 'CGROUPFS');
    assert.equal((await runtimeConfig(deps('cgroupfs'))).linux.cgroupDriver, 'CGROUPFS');
    assert.equal((await runtimeConfig(deps('systemd'))).linux.cgroupDriver, 'SYSTEMD');
  });
});
