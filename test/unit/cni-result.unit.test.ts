import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCniResult, podIps } from '../../src/adapters/cni/cni-result.js';

const NETNS = '/run/cri-ledger/netns/abc';

describe('CNI result parsing', () => {
  it('reads interfaces, ips and routes of a bridge result', () => {
    const raw = {
      cniVersion: '1.0.0',
      interfaces: [
        { name: 'cni0', mac: 'aa:bb:cc:dd:ee:ff' },
        { name: 'veth1234' },
        { name: 'eth0', mac: '0a:58:0a:00:00:02', sandbox: NETNS },
      ],
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 2 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: {},
    };
    const result = parseCniResult(raw);
    assert.equal(result.cniVersion, '1.0.0');
    assert.deepEqual(result.interfaces[2], { name: 'eth0', mac: '0a:58:0a:00:00:02', sandbox: NETNS });
    assert.deepEqual(result.ips, [
      { address: '10.0.0.2/24', ip: '10.0.0.2', family: 4, interface: 2, gateway: '10.0.0.1' },
    ]);
    assert.deepEqual(result.routes, [{ dst: '0.0.0.0/0' }]);
    assert.equal(result.raw, raw);
    assert.deepEqual(podIps(result, 'eth0'), ['10.0.0.2']);
  });

  it('reads a 0.4.0 result whose ips carry a version field', () => {
    const result = parseCniResult({
      cniVersion: '0.4.0',
      ips: [
        { version: '6', address: 'fd00::5/64' },
        { version: '4', address: '10.1.0.5/16' },
      ],
    });
    assert.deepEqual(podIps(result, 'eth0'), ['10.1.0.5', 'fd00::5']);
  });

  it('puts IPv4 first, keeps only the pod interface inside the sandbox, and drops duplicates', () => {
    const result = parseCniResult({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'lo', sandbox: NETNS }, { name: 'eth0', sandbox: NETNS }, { name: 'eth0' }],
      ips: [
        { address: '127.0.0.1/8', interface: 0 },
        { address: 'fd00::2/64', interface: 1 },
        { address: '10.0.0.2/24', interface: 1 },
        { address: '10.0.0.2/24', interface: 1 },
        { address: '192.168.0.9/24', interface: 2 },
      ],
    });
    assert.deepEqual(podIps(result, 'eth0'), ['10.0.0.2', 'fd00::2']);
  });

  it('has no pod IP when every address is on another interface', () => {
    const result = parseCniResult({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'lo', sandbox: NETNS }],
      ips: [{ address: '127.0.0.1/8', interface: 0 }],
    });
    assert.deepEqual(podIps(result, 'eth0'), []);
  });

  for (const [what, raw, message] of [
    ['a non-object', [1], /not a JSON object/],
    ['an address that is not an IP', { ips: [{ address: 'ten/8' }] }, /ips\[0\]\.address "ten\/8"/],
    ['an ip without address', { ips: [{ gateway: '10.0.0.1' }] }, /ips\[0\] has no address/],
    ['an interface without name', { interfaces: [{ mac: 'x' }] }, /interfaces\[0\] has no name/],
    ['a route without dst', { routes: [{ gw: '10.0.0.1' }] }, /routes\[0\] has no dst/],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => parseCniResult(raw), message);
    });
  }
});
