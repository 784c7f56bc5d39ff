import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatCniArgs, pluginStdin, runtimeConfigFor, runtimePortMappings } from '../../src/adapters/cni/cni-args.js';
import type { CniNetworkConfig } from '../../src/adapters/cni/cni-config.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const pod = { sandboxId: 'abc123', podName: 'web-0', podNamespace: 'shop', podUid: '7f1c-42' };

describe('CNI_ARGS', () => {
  it("carries kubelet's pod keys after IgnoreUnknown", () => {
    assert.equal(
      formatCniArgs(pod),
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=7f1c-42',
    );
  });

  it('refuses a value that would split the list, naming the field', () => {
    assert.throws(
      () => formatCniArgs({ ...pod, podName: 'a;K8S_POD_UID=evil' }),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === 'podName',
    );
  });
});

describe('portMappings capability', () => {
  it('drops mappings without a host port, lower-cases the protocol, sets hostIP only when given', () => {
    assert.deepEqual(
      runtimePortMappings([
        { hostPort: 8080, containerPort: 80, protocol: 'TCP' },
        { hostPort: 0, containerPort: 81, protocol: 'TCP' },
        { hostPort: 5353, containerPort: 53, protocol: 'UDP', hostIp: '10.0.0.1' },
        { hostPort: 9000, containerPort: 9000 },
      ]),
      [
        { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '10.0.0.1' },
        { hostPort: 9000, containerPort: 9000, protocol: 'tcp' },
      ],
    );
  });

  it('gives a plugin only the capabilities it declares true and the runtime supplies', () => {
    const args = { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }], bandwidth: undefined };
    assert.deepEqual(
      runtimeConfigFor({ type: 'portmap', capabilities: { portMappings: true, bandwidth: true } }, args),
      { portMappings: args.portMappings },
    );
    assert.equal(runtimeConfigFor({ type: 'portmap', capabilities: { portMappings: false } }, args), undefined);
    assert.equal(runtimeConfigFor({ type: 'bridge' }, args), undefined);
  });
});

describe('plugin stdin', () => {
  const network: CniNetworkConfig = {
    file: '/d/a.conflist',
    name: 'pods',
    cniVersion: '1.0.0',
    disableCheck: false,
    plugins: [],
  };

  it("sets the list's name and version, replaces a written runtimeConfig, and chains prevResult", () => {
    const plugin = {
      type: 'portmap',
      name: 'ignored',
      cniVersion: '0.3.1',
      snat: true,
      runtimeConfig: { stale: 1 },
      capabilities: { portMappings: true },
    };
    const prev = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] };
    assert.deepEqual(pluginStdin(network, plugin, { portMappings: [] }, prev), {
      type: 'portmap',
      name: 'pods',
      cniVersion: '1.0.0',
      snat: true,
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [] },
      prevResult: prev,
    });
  });

  it('leaves out runtimeConfig and prevResult when there are none', () => {
    assert.deepEqual(pluginStdin(network, { type: 'bridge', runtimeConfig: { stale: 1 } }, {}, undefined), {
      type: 'bridge',
      name: 'pods',
      cniVersion: '1.0.0',
    });
  });
});
