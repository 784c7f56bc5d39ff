import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CniError } from '../../src/adapters/cni/cni-errors.js';
import { pluginEnv, pluginFailure, type CniInvocation } from '../../src/adapters/cni/cni-exec.js';
import { parseMountInfo } from '../../src/adapters/netns/netns.js';

const inv: CniInvocation = {
  command: 'ADD',
  containerId: 'abc',
  netns: '/run/cri-ledger/netns/abc',
  ifName: 'eth0',
  args: 'IgnoreUnknown=1',
  binDir: '/opt/cni/bin:/usr/lib/cni',
  timeoutMs: 1000,
};

describe('plugin environment', () => {
  it('sets every CNI_* parameter and drops stray ones from our own environment', () => {
    const env = pluginEnv(inv, { PATH: '/usr/bin:/bin', HOME: '/root', CNI_IFNAME: 'wrong', CNI_STRAY: 'x' });
    assert.equal(env.CNI_COMMAND, 'ADD');
    assert.equal(env.CNI_CONTAINERID, 'abc');
    assert.equal(env.CNI_NETNS, '/run/cri-ledger/netns/abc');
    assert.equal(env.CNI_IFNAME, 'eth0');
    assert.equal(env.CNI_ARGS, 'IgnoreUnknown=1');
    assert.equal(env.CNI_PATH, '/opt/cni/bin:/usr/lib/cni');
    assert.equal(env.CNI_STRAY, undefined);
    assert.equal(env.HOME, '/root');
  });

  it('adds the sbin dirs to PATH so portmap finds iptables', () => {
    const path = (pluginEnv(inv, { PATH: '/usr/bin:/bin' }).PATH ?? '').split(':');
    assert.deepEqual(path.slice(0, 2), ['/usr/bin', '/bin']);
    assert.ok(path.includes('/usr/sbin') && path.includes('/sbin'));
  });
});

describe('plugin failure', () => {
  it("reads the plugin's JSON error: msg, details and code", () => {
    assert.deepEqual(
      pluginFailure('{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no subnet"}', '', 1),
      {
        detail: 'invalid config: no subnet',
        code: 7,
      },
    );
  });

  it('falls back to stderr, then to the exit code', () => {
    assert.deepEqual(pluginFailure('', 'panic: nil map\n', 2), { detail: 'panic: nil map' });
    assert.deepEqual(pluginFailure('', '', 3), { detail: 'exited with code 3' });
  });

  it('names plugin, command, message and code in the error', () => {
    const error = new CniError('bridge', 'DEL', 'boom', 11);
    assert.equal(error.name, 'CniError');
    assert.equal(error.message, 'CNI plugin bridge DEL failed: boom (code 11)');
  });
});

describe('mountinfo', () => {
  it('reads mount point and fs type, unescaping octal', () => {
    const text =
      '41 26 254:0 /tmp/a\\040b/netns /tmp/a\\040b/netns rw,relatime shared:1 - ext4 /dev/vda rw\n' +
      '42 41 0:4 net:[4026532176] /tmp/a\\040b/netns/x rw shared:2 - nsfs nsfs rw\n';
    assert.deepEqual(parseMountInfo(text), [
      { mountPoint: '/tmp/a b/netns', optional: 'shared:1', fsType: 'ext4' },
      { mountPoint: '/tmp/a b/netns/x', optional: 'shared:2', fsType: 'nsfs' },
    ]);
  });
});
