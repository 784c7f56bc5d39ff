import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { CNI_BIN_DIR, startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * A pod on a test-only CNI bridge (a random name and a private /24), end to end: the
 * pod gets its own network namespace and an IP, its container joins that namespace,
 * and removing the pod gives the IP back and leaves no veth or netns.
 */

describe('a pod on a CNI bridge network over the CRI socket', () => {
  let h: CriHarness;
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const ipamDir = () => h.ipamDir;
  const bridgePorts = () => h.bridgePorts();
  let subnet = '';

  before(async () => {
    assert.ok(
      existsSync(join(CNI_BIN_DIR, 'bridge')),
      `CNI plugins missing in ${CNI_BIN_DIR}: install containernetworking-plugins`,
    );
    h = await startCriHarness({ network: true, prefix: 'cri-ledger-e2e-net-' });
    subnet = h.subnet!;
  });
  after(() => h?.cleanup());

  const podConfig = { metadata: { name: 'net', uid: 'uid-net', namespace: 'default', attempt: 0 }, hostname: 'net-0' };
  let podId = '';

  it('reports NetworkReady once a CNI config and its plugins are there', async () => {
    const response = await call<{ status: { conditions: Array<{ type: string; status: boolean; message: string }> } }>(
      'status',
      {},
    );
    const network = response.status.conditions.find((c) => c.type === 'NetworkReady');
    assert.equal(network?.status, true, network?.message);
  });

  it('gives the pod its own network namespace and an IP on the bridge', async () => {
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
    const status = await call<{ status: { state: string; network: { ip: string } } }>('podSandboxStatus', {
      podSandboxId: podId,
    });
    assert.equal(status.status.state, 'SANDBOX_READY');
    assert.match(status.status.network.ip, new RegExp(`^${subnet.replaceAll('.', '\\.')}\\.\\d+$`));
    assert.ok(existsSync(join(ipamDir(), status.status.network.ip)), 'host-local holds the IP');
    assert.notEqual(bridgePorts(), '', 'a veth is on the bridge');
  });

  it('puts the container in the pod network namespace', async () => {
    const { containerId } = await call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: podConfig,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '5'] },
    });
    const record = await unaryCall<{ container: { spec: { value: Buffer } } }>(h.api.containers, 'Get', {
      id: containerId,
    });
    const spec = JSON.parse(Buffer.from(record.container.spec.value).toString('utf8'));
    const net = spec.linux.namespaces.find((n: { type: string }) => n.type === 'network');
    assert.equal(net.path, join(h.root, 'state', 'netns', podId));
  });

  it('gives the IP back and leaves no veth or netns when the pod is removed', async () => {
    const status = await call<{ status: { network: { ip: string } } }>('podSandboxStatus', { podSandboxId: podId });
    await call('removePodSandbox', { podSandboxId: podId });
    assert.equal(existsSync(join(ipamDir(), status.status.network.ip)), false, 'host-local still holds the IP');
    assert.equal(bridgePorts(), '', 'a veth is left on the bridge');
    assert.equal(existsSync(join(h.root, 'state', 'netns', podId)), false, 'the netns file is left');
  });
});
