import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import type { CreateContainerRequest__Output } from '../../src/adapters/cri/generated/runtime/v1/CreateContainerRequest.js';
import { ALL_CAPABILITIES } from '../../src/adapters/oci/capabilities.js';
import { deviceInfo, hostPropagation, readHostFacts } from '../../src/adapters/oci/host-facts.js';
import { OciSpecFactory } from '../../src/adapters/oci/oci-spec-factory.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { TEST_IMAGE } from '../support/fake-runtime.js';
import { hexId } from '../support/fixtures.js';

/** A request as the CRI server decodes it (every default filled in), from a sparse one. */
function decoded(request: object): CreateContainerRequest__Output {
  const method = runtimeServiceV1.CreateContainer;
  return method.requestDeserialize(method.requestSerialize(request as never)) as CreateContainerRequest__Output;
}

const sandboxId = hexId('pod');
const containerId = hexId('container');

describe('OCI spec factory on this host', () => {
  it('reads the host: capabilities, devices, oom score and cgroup version', () => {
    const host = readHostFacts();
    // This process's own: on these VMs CAP_SYS_RESOURCE is not among them.
    const own = readFileSync('/proc/self/status', 'utf8');
    const bits = (name: string) => BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)`, 'm').exec(own)![1]}`);
    const held = bits('CapBnd') & bits('CapEff');
    assert.ok(host.heldCapabilities.length > 0);
    for (const [bit, name] of ALL_CAPABILITIES.entries())
      assert.equal(host.heldCapabilities.includes(name), ((held >> BigInt(bit)) & 1n) === 1n, name);
    assert.ok([1, 2].includes(host.cgroupVersion));
    assert.ok(Number.isInteger(host.currentOomScoreAdj));
    assert.ok(host.devices.some((d) => d.path === '/dev/null'));
  });

  it('describes a device node by its major and minor numbers', () => {
    assert.deepEqual(
      deviceInfo('/dev/null').map((d) => [d.type, d.major, d.minor]),
      [['c', 1, 3]],
    );
    assert.deepEqual(deviceInfo('/no/such/device'), []);
  });

  it('tells whether the mount holding a path is shared', () => {
    const root = hostPropagation('/');
    assert.equal(typeof root.shared, 'boolean');
    assert.equal(typeof root.slave, 'boolean');
  });

  const factory = new OciSpecFactory({
    host: readHostFacts(),
    options: { restrictOomScoreAdj: true, containerdNamespace: 'cri-ledger' },
    sandboxFiles: (id) => ({
      hostname: `/sandboxes/${id}/hostname`,
      hosts: `/sandboxes/${id}/hosts`,
      resolvConf: `/sandboxes/${id}/resolv.conf`,
      devShm: `/sandboxes/${id}/shm`,
    }),
  });
  const input = (request: object) => {
    const r = decoded(request);
    return {
      containerId,
      config: r.config,
      sandboxConfig: r.sandboxConfig,
      sandbox: {
        id: sandboxId,
        pid: 4242,
        netnsPath: '/run/cri-ledger/netns/x',
        hostNetwork: false,
        name: 'web_default_uid_0',
      },
      image: { ...TEST_IMAGE, config: { ...TEST_IMAGE.config, volumes: ['/data'] } },
      userFiles: {
        passwd: 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n',
        group: 'root:x:0:\napp:x:1000:\n',
      },
      dirs: {
        root: `/var/lib/cri-ledger/containers/${containerId}`,
        volatile: `/run/cri-ledger/containers/${containerId}`,
      },
    };
  };

  it('builds a runc spec from a decoded CRI request, the image config and the sandbox', async () => {
    const built = await factory.containerSpec(
      input({
        config: {
          metadata: { name: 'app', attempt: 0 },
          image: { image: 'busybox' },
          envs: [{ key: 'MODE', value: 'test' }],
          logPath: 'app/0.log',
          linux: { securityContext: { runAsUser: { value: '1000' } } },
        },
        sandboxConfig: {
          metadata: { name: 'web', namespace: 'default', uid: 'uid', attempt: 0 },
          logDirectory: '/var/log/pods/web',
        },
      }),
    );
    const spec = built.spec as {
      process: { args: string[]; env: string[]; user: { uid: number } };
      mounts: Array<{ destination: string; source: string }>;
    };
    assert.deepEqual(spec.process.args, ['sh']);
    assert.ok(spec.process.env.includes('MODE=test'));
    assert.equal(spec.process.user.uid, 1000);
    assert.ok(spec.mounts.some((m) => m.destination === '/etc/hosts' && m.source === `/sandboxes/${sandboxId}/hosts`));
    assert.equal(built.logPath, '/var/log/pods/web/app/0.log');
    assert.equal(built.volumeHostPaths.length, 1);
    assert.ok(built.volumeHostPaths[0]!.startsWith(`/var/lib/cri-ledger/containers/${containerId}/`));
  });

  it('refuses a log path that escapes the log directory, naming the field', async () => {
    await assert.rejects(
      factory.containerSpec(
        input({
          config: { metadata: { name: 'app' }, image: { image: 'busybox' }, logPath: '../../etc/passwd' },
          sandboxConfig: { logDirectory: '/var/log/pods/web' },
        }),
      ),
      (e: unknown) => e instanceof InvalidArgumentError && /log_path/.test(e.message),
    );
  });
});
