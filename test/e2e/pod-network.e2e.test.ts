import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { startServe, tempRoot, type ServeProcess } from '../support/cli.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../support/oci-image.js';

/*
 * A pod on a test-only CNI bridge (a random name and a private /24), end to end: the
 * pod gets its own network namespace and an IP, its container joins that namespace,
 * and removing the pod gives the IP back and leaves no veth or netns.
 */

type Call = (request: object, callback: (error: ServiceError | null, response: Record<string, unknown>) => void) => void;
const NAMESPACE = 'cri-ledger';
const CNI_BIN_DIR = '/usr/lib/cni';
const bridge = `crle${randomBytes(3).toString('hex')}`;
const subnet = `10.232.${randomInt(1, 255)}`;

describe('a pod on a CNI bridge network over the CRI socket', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let containerd: PrivateContainerd;
  let serve: ServeProcess;
  let cri: Client & Record<string, Call>;
  let api: ContainerdApi;
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> =>
    new Promise((resolve, reject) => cri[method]!.call(cri, request, (error, response) => (error ? reject(error) : resolve(response as T))));
  const ipamDir = () => join(root.dir, 'ipam', 'crl-e2e');
  const bridgePorts = () => spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).stdout;

  before(async () => {
    assert.ok(existsSync(join(CNI_BIN_DIR, 'bridge')), `CNI plugins missing in ${CNI_BIN_DIR}: install containernetworking-plugins`);
    root = await tempRoot('cri-ledger-e2e-net-');
    containerd = await startContainerd();
    for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) await importTestImage(containerd.address, NAMESPACE, await buildTestImage(spec, join(root.dir, 'images')));
    const confDir = join(root.dir, 'cni');
    await mkdir(confDir);
    await writeFile(
      join(confDir, '10-e2e.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'crl-e2e',
        plugins: [
          { type: 'loopback' },
          { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: `${subnet}.0/24` }]], dataDir: join(root.dir, 'ipam') } },
        ],
      }),
    );
    serve = await startServe({
      root: root.dir,
      socket: join(root.dir, 'cri.sock'),
      args: ['--containerd-address', containerd.address, '--cni-conf-dir', confDir, '--cni-bin-dir', CNI_BIN_DIR, '--restrict-oom-score-adj', 'true'],
    });
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    cri = new Constructor(`unix://${serve.socket}`, credentials.createInsecure()) as Client & Record<string, Call>;
    api = connectContainerd({ address: containerd.address, namespace: NAMESPACE });
  });

  after(async () => {
    cri?.close();
    api?.close();
    await serve?.stop('SIGKILL');
    await containerd?.stop();
    for (const mount of root ? mountsUnder(root.dir) : []) execFileSync('umount', ['-l', mount]);
    spawnSync('ip', ['link', 'del', bridge]);
    await root?.cleanup();
  });

  const podConfig = { metadata: { name: 'net', uid: 'uid-net', namespace: 'default', attempt: 0 }, hostname: 'net-0' };
  let podId = '';

  it('reports NetworkReady once a CNI config and its plugins are there', async () => {
    const response = await call<{ status: { conditions: Array<{ type: string; status: boolean; message: string }> } }>('status', {});
    const network = response.status.conditions.find((c) => c.type === 'NetworkReady');
    assert.equal(network?.status, true, network?.message);
  });

  it('gives the pod its own network namespace and an IP on the bridge', async () => {
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
    const status = await call<{ status: { state: string; network: { ip: string } } }>('podSandboxStatus', { podSandboxId: podId });
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
    const record = await unaryCall<{ container: { spec: { value: Buffer } } }>(api.containers, 'Get', { id: containerId });
    const spec = JSON.parse(Buffer.from(record.container.spec.value).toString('utf8'));
    const net = spec.linux.namespaces.find((n: { type: string }) => n.type === 'network');
    assert.equal(net.path, join(root.dir, 'state', 'netns', podId));
  });

  it('gives the IP back and leaves no veth or netns when the pod is removed', async () => {
    const status = await call<{ status: { network: { ip: string } } }>('podSandboxStatus', { podSandboxId: podId });
    await call('removePodSandbox', { podSandboxId: podId });
    assert.equal(existsSync(join(ipamDir(), status.status.network.ip)), false, 'host-local still holds the IP');
    assert.equal(bridgePorts(), '', 'a veth is left on the bridge');
    assert.equal(existsSync(join(root.dir, 'state', 'netns', podId)), false, 'the netns file is left');
  });
});
