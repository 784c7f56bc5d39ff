import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Client,
  credentials,
  makeClientConstructor,
  status as Status,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { pino } from 'pino';
import {
  imageServiceV1,
  imageServiceV1alpha2,
  runtimeServiceV1,
  runtimeServiceV1alpha2,
  unimplementedHandlers,
  type CreateContainerRequest,
} from '../../src/adapters/cri/cri-definition.js';
import { startSocketServer, type SocketServer } from '../../src/adapters/grpc/socket-server.js';
import { tempRoot } from '../support/cli.js';

/*
 * The CRI protocol definition: the services kubelet and crictl call exist under both API
 * versions, answer UNIMPLEMENTED until handlers exist, and put fields on the wire under
 * upstream's numbers (checked against bytes written out by hand, not by protobufjs).
 */

// Upstream k8s.io/cri-api runtime.v1, Kubernetes 1.28-1.31.
const RUNTIME_V1_RPCS = [
  'Version',
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'PodSandboxStatus',
  'ListPodSandbox',
  'CreateContainer',
  'StartContainer',
  'StopContainer',
  'RemoveContainer',
  'ListContainers',
  'ContainerStatus',
  'UpdateContainerResources',
  'ReopenContainerLog',
  'ExecSync',
  'Exec',
  'Attach',
  'PortForward',
  'ContainerStats',
  'ListContainerStats',
  'PodSandboxStats',
  'ListPodSandboxStats',
  'UpdateRuntimeConfig',
  'Status',
  'CheckpointContainer',
  'GetContainerEvents',
  'ListMetricDescriptors',
  'ListPodSandboxMetrics',
  'RuntimeConfig',
];
// Added upstream after 1.31; the Stream* ones stream their response.
const RUNTIME_V1_LATER_RPCS = [
  'UpdatePodSandboxResources',
  'StreamPodSandboxes',
  'StreamContainers',
  'StreamContainerStats',
  'StreamPodSandboxStats',
  'StreamPodSandboxMetrics',
];
const IMAGE_V1_RPCS = ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo'];
const IMAGE_V1_LATER_RPCS = ['StreamImages'];
// Upstream's last runtime.v1alpha2 (Kubernetes 1.25).
const RUNTIME_V1ALPHA2_RPCS = [
  'Version',
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'PodSandboxStatus',
  'ListPodSandbox',
  'CreateContainer',
  'StartContainer',
  'StopContainer',
  'RemoveContainer',
  'ListContainers',
  'ContainerStatus',
  'UpdateContainerResources',
  'ReopenContainerLog',
  'ExecSync',
  'Exec',
  'Attach',
  'PortForward',
  'ContainerStats',
  'ListContainerStats',
  'PodSandboxStats',
  'ListPodSandboxStats',
  'UpdateRuntimeConfig',
  'Status',
];

const SERVICES: ReadonlyArray<{ name: string; definition: ServiceDefinition }> = [
  { name: 'runtime.v1.RuntimeService', definition: runtimeServiceV1 },
  { name: 'runtime.v1.ImageService', definition: imageServiceV1 },
  { name: 'runtime.v1alpha2.RuntimeService', definition: runtimeServiceV1alpha2 },
  { name: 'runtime.v1alpha2.ImageService', definition: imageServiceV1alpha2 },
];

function sorted(names: readonly string[]): string[] {
  return [...names].sort();
}

/** Protobuf varint of a non-negative integer, written out here so the test does not trust protobufjs. */
function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** Calls `rpc` with an empty request and settles with the status it ended with. */
function callStatus(
  client: Client,
  definition: ServiceDefinition,
  rpc: string,
): Promise<{ code: number; details: string }> {
  const method = definition[rpc]!;
  return new Promise((settle) => {
    const done = (error: ServiceError | null) =>
      settle(error ? { code: error.code, details: error.details } : { code: Status.OK, details: '' });
    if (method.responseStream) {
      const call = client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, {});
      call.on('data', () => undefined);
      call.on('error', done);
      call.on('end', () => done(null));
    } else {
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, {}, (error) =>
        done(error),
      );
    }
  });
}

describe('CRI protocol definition', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let server: SocketServer;
  const clients = new Map<string, Client>();

  before(async () => {
    root = await tempRoot('cri-proto-');
    server = await startSocketServer({
      socketPath: join(root.dir, 'cri.sock'),
      services: SERVICES.map(({ definition }) => ({ definition, implementation: unimplementedHandlers(definition) })),
      logger: pino({ level: 'silent' }),
    });
    for (const { name, definition } of SERVICES) {
      const ClientClass = makeClientConstructor(definition, name);
      clients.set(name, new ClientClass(`unix://${server.socketPath}`, credentials.createInsecure()));
    }
  });

  after(async () => {
    for (const client of clients.values()) client.close();
    await server?.close(1_000);
    await root?.cleanup();
  });

  it('declares every upstream v1 RPC, and no other, with the streaming ones streaming', () => {
    assert.deepEqual(sorted(Object.keys(runtimeServiceV1)), sorted([...RUNTIME_V1_RPCS, ...RUNTIME_V1_LATER_RPCS]));
    assert.deepEqual(sorted(Object.keys(imageServiceV1)), sorted([...IMAGE_V1_RPCS, ...IMAGE_V1_LATER_RPCS]));
    const streaming = [runtimeServiceV1, imageServiceV1].flatMap((d) =>
      Object.entries(d)
        .filter(([, m]) => m.responseStream)
        .map(([n]) => n),
    );
    assert.deepEqual(
      sorted(streaming),
      sorted(['GetContainerEvents', ...RUNTIME_V1_LATER_RPCS.filter((n) => n.startsWith('Stream')), 'StreamImages']),
    );
    for (const d of [runtimeServiceV1, imageServiceV1, runtimeServiceV1alpha2, imageServiceV1alpha2]) {
      assert.ok(
        Object.values(d).every((m) => !m.requestStream),
        'CRI has no client-streaming RPC',
      );
    }
  });

  it('declares the RPCs of upstream v1alpha2 under runtime.v1alpha2 paths', () => {
    assert.deepEqual(sorted(Object.keys(runtimeServiceV1alpha2)), sorted(RUNTIME_V1ALPHA2_RPCS));
    assert.deepEqual(sorted(Object.keys(imageServiceV1alpha2)), sorted(IMAGE_V1_RPCS));
    assert.equal(runtimeServiceV1alpha2.CreateContainer.path, '/runtime.v1alpha2.RuntimeService/CreateContainer');
    assert.equal(imageServiceV1alpha2.PullImage.path, '/runtime.v1alpha2.ImageService/PullImage');
    assert.equal(runtimeServiceV1.CreateContainer.path, '/runtime.v1.RuntimeService/CreateContainer');
  });

  for (const { name, definition } of SERVICES) {
    it(`answers every ${name} RPC with UNIMPLEMENTED naming the RPC`, async () => {
      const client = clients.get(name)!;
      const rpcs = Object.keys(definition);
      const statuses = await Promise.all(rpcs.map((rpc) => callStatus(client, definition, rpc)));
      assert.deepEqual(
        statuses,
        rpcs.map((rpc) => ({
          code: Status.UNIMPLEMENTED,
          details: `${name}/${rpc} is not implemented by cri-ledger yet`,
        })),
      );
    });
  }

  it('puts VersionRequest.version on field 1', () => {
    const bytes = Buffer.from([0x0a, 0x02, 0x76, 0x31]); // field 1, length 2, "v1"
    assert.deepEqual(runtimeServiceV1.Version.requestSerialize({ version: 'v1' }), bytes);
    assert.deepEqual(runtimeServiceV1.Version.requestDeserialize(bytes), { version: 'v1' });
  });

  it('puts CreateContainerRequest.config on 2, ContainerConfig.metadata on 1, and name, attempt on 1, 2', () => {
    // ContainerMetadata{name: "a", attempt: 1} is 0a 01 61 10 01, nested twice.
    const bytes = Buffer.from([0x12, 0x07, 0x0a, 0x05, 0x0a, 0x01, 0x61, 0x10, 0x01]);
    const request: CreateContainerRequest = { config: { metadata: { name: 'a', attempt: 1 } } };
    assert.deepEqual(runtimeServiceV1.CreateContainer.requestSerialize(request), bytes);
    assert.deepEqual(runtimeServiceV1.CreateContainer.requestDeserialize(bytes).config?.metadata, {
      name: 'a',
      attempt: 1,
    });
  });

  it('keeps a nanosecond timestamp past 2^53 exact, as a decimal string', () => {
    const createdAt = '1700000000123456789';
    // ContainerStatusResponse.status (1) -> ContainerStatus.created_at (4, varint).
    const status = [0x20, ...varint(BigInt(createdAt))];
    const bytes = Buffer.from([0x0a, status.length, ...status]);
    assert.deepEqual(runtimeServiceV1.ContainerStatus.responseSerialize({ status: { createdAt } }), bytes);
    assert.equal(runtimeServiceV1.ContainerStatus.responseDeserialize(bytes).status?.createdAt, createdAt);
  });

  it('decodes enums to their names, and a value this build does not know to its number', () => {
    // ListContainersRequest.filter (1) -> ContainerFilter.state (2) -> ContainerStateValue.state (1).
    const known = runtimeServiceV1.ListContainers.requestDeserialize(Buffer.from([0x0a, 0x04, 0x12, 0x02, 0x08, 0x01]));
    assert.equal(known.filter?.state?.state, 'CONTAINER_RUNNING');
    const unknown = runtimeServiceV1.ListContainers.requestDeserialize(
      Buffer.from([0x0a, 0x04, 0x12, 0x02, 0x08, 0x07]),
    );
    assert.equal(unknown.filter?.state?.state as unknown, 7);
  });

  it('round-trips a full CreateContainerRequest, identically under v1 and v1alpha2', () => {
    const request: CreateContainerRequest = {
      podSandboxId: 'pod-1',
      config: {
        metadata: { name: 'web', attempt: 2 },
        image: { image: 'registry.k8s.io/pause:3.9', userSpecifiedImage: 'pause' },
        command: ['/bin/sh', '-c'],
        args: ['sleep 1'],
        workingDir: '/srv',
        envs: [
          { key: 'A', value: '1' },
          { key: 'B', value: '' },
        ],
        mounts: [
          {
            containerPath: '/data',
            hostPath: '/var/lib/data',
            readonly: true,
            propagation: 'PROPAGATION_HOST_TO_CONTAINER',
          },
        ],
        labels: { app: 'web' },
        annotations: { 'io.kubernetes.container.hash': 'abc' },
        logPath: 'web/2.log',
        linux: {
          resources: {
            cpuQuota: '50000',
            cpuPeriod: 100000,
            memoryLimitInBytes: '1073741824',
            oomScoreAdj: '-997',
            unified: { 'memory.high': '900M' },
          },
          securityContext: {
            runAsUser: { value: '0' },
            capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['ALL'] },
            seccomp: { profileType: 'Localhost', localhostRef: '/profiles/web.json' },
            namespaceOptions: { pid: 'CONTAINER', network: 'POD' },
          },
        },
        CDIDevices: [{ name: 'vendor.com/gpu=0' }],
        stopSignal: 'SIGTERM',
      },
    };
    const bytes = runtimeServiceV1.CreateContainer.requestSerialize(request);
    assert.deepEqual(runtimeServiceV1alpha2.CreateContainer.requestSerialize(request), bytes);

    const decoded = runtimeServiceV1alpha2.CreateContainer.requestDeserialize(bytes);
    const config = decoded.config!;
    assert.equal(decoded.podSandboxId, 'pod-1');
    assert.equal(decoded.sandboxConfig, null, 'an unset message decodes to null');
    assert.deepEqual(config.metadata, { name: 'web', attempt: 2 });
    assert.equal(config.image?.image, 'registry.k8s.io/pause:3.9');
    assert.equal(config.image?.userSpecifiedImage, 'pause');
    assert.deepEqual([config.command, config.args, config.workingDir], [['/bin/sh', '-c'], ['sleep 1'], '/srv']);
    assert.deepEqual(config.envs, [
      { key: 'A', value: '1' },
      { key: 'B', value: '' },
    ]);
    assert.equal(config.mounts.length, 1);
    assert.deepEqual(
      [
        config.mounts[0]!.containerPath,
        config.mounts[0]!.hostPath,
        config.mounts[0]!.readonly,
        config.mounts[0]!.propagation,
      ],
      ['/data', '/var/lib/data', true, 'PROPAGATION_HOST_TO_CONTAINER'],
    );
    assert.deepEqual(config.labels, { app: 'web' });
    assert.deepEqual(config.annotations, { 'io.kubernetes.container.hash': 'abc' });
    assert.equal(config.logPath, 'web/2.log');
    const resources = config.linux!.resources!;
    assert.deepEqual(
      [
        resources.cpuQuota,
        resources.cpuPeriod,
        resources.memoryLimitInBytes,
        resources.oomScoreAdj,
        resources.cpuShares,
      ],
      ['50000', '100000', '1073741824', '-997', '0'],
    );
    assert.deepEqual(resources.unified, { 'memory.high': '900M' });
    const security = config.linux!.securityContext!;
    assert.deepEqual(security.runAsUser, { value: '0' }, 'uid 0 is set, not absent');
    assert.equal(security.runAsGroup, null);
    assert.deepEqual(security.capabilities, {
      addCapabilities: ['NET_ADMIN'],
      dropCapabilities: ['ALL'],
      addAmbientCapabilities: [],
    });
    assert.deepEqual(security.seccomp, { profileType: 'Localhost', localhostRef: '/profiles/web.json' });
    assert.deepEqual([security.namespaceOptions?.pid, security.namespaceOptions?.network], ['CONTAINER', 'POD']);
    assert.deepEqual(config.CDIDevices, [{ name: 'vendor.com/gpu=0' }]);
    assert.equal(config.stopSignal, 'SIGTERM');
  });
});
