import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { busyboxBase, composeImage, pushImage } from '../support/registry-images.js';
import { until } from '../support/until.js';

/*
 * The crash sweep, continued past creation: StartContainer, StopContainer,
 * RemoveContainer and PullImage are killed at each of their failpoints (as SIGKILL
 * would), and the service is started again without it. After the restart the log and
 * containerd must agree (`verify --against-containerd` clean), nothing may be left
 * behind, and kubelet's retry of the call must do what the call would have done.
 */

const START_STEPS = ['LogsAttached', 'TaskStarted', 'ContainerStarted'];
const STOP_STEPS = ['TaskStopped', 'ContainerStopped', 'TaskDeleted'];
const REMOVE_STEPS = ['Stopped', 'TaskDeleted', 'ResourcesRemoved', 'ContainerRemoved'];
const PULL_STEPS = ['ImagePullStarted', 'LayerUnpacked', 'Pulled', 'ImagePulled'];

describe('crash recovery after creation: start, stop, remove and pull cut short by a crash', () => {
  let h: CriHarness;
  let registry: TestRegistry;
  let podId = '';
  let made = 0;
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const pod = {
    metadata: { name: 'crash-life', uid: 'uid-crash-life', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const state = async (containerId: string): Promise<string> =>
    (await call<{ status: { state: string } }>('containerStatus', { containerId })).status.state;
  const tasks = async (): Promise<string[]> =>
    (await unaryCall<{ tasks: Array<{ id: string }> }>(h.api.tasks, 'List', {})).tasks
      .map((t) => t.id)
      .filter((id) => id !== podId);
  const verifyClean = async (): Promise<void> => {
    assert.equal((await runCli(['verify', '--socket', h.socket])).code, 0, 'verify is clean');
    const against = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-address',
      h.containerd.address,
    ]);
    assert.equal(against.code, 0, `verify --against-containerd is clean:\n${against.stdout}${against.stderr}`);
  };
  /** containerd records and active snapshots other than the pod's, and container dirs: what a removed container must not leave. */
  const leftovers = async () => ({
    containers: (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .filter((id) => id !== podId),
    snapshots: (
      await collectStream<{ info: Array<{ name: string; kind: string }> }>(h.api.snapshots, 'List', {
        snapshotter: 'overlayfs',
      })
    )
      .flatMap((m) => m.info)
      .filter((i) => i.kind === 'ACTIVE' && i.name !== podId)
      .map((i) => i.name),
    containerDirs: await readdir(join(h.root, 'containers')).catch((): string[] => []),
    tasks: await tasks(),
  });
  const NOTHING = { containers: [], snapshots: [], containerDirs: [], tasks: [] };
  /** A fresh container in the pod, CREATED (started too, when asked). */
  const container = async (started = false): Promise<string> => {
    const config = {
      metadata: { name: `life-${++made}`, attempt: 0 },
      image: { image: 'busybox' },
      command: ['sleep', '3600'],
    };
    const { containerId } = await call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: pod,
      config,
    });
    if (started) await call('startContainer', { containerId });
    return containerId;
  };
  const crashes = async (method: string, request: object): Promise<void> => {
    const error = (await call(method, request).catch((e: ServiceError) => e)) as ServiceError;
    assert.ok(error instanceof Error, `${method} fails: the service died`);
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-crash-life-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    registry = await startRegistry();
    await mkdir(join(h.registryConfigDir, registry.host), { recursive: true });
    await writeFile(join(h.registryConfigDir, registry.host, 'hosts.toml'), `server = "${registry.url}"\n`);
    await pushImage(registry, 'test/crash', composeImage(await busyboxBase()), 'v1');
  });
  after(async () => {
    await registry?.stop();
    await h?.cleanup();
  });

  for (const step of START_STEPS) {
    it(`StartContainer killed after ${step}: after the restart the container is CREATED or RUNNING as recorded, and a retry runs it`, async () => {
      const id = await container();
      await h.restart(`StartContainer.${step}=crash`);
      await crashes('startContainer', { containerId: id });
      await h.restart();
      // A task the log never recorded as started is deleted (the stray-task sweep).
      const recorded = step === 'ContainerStarted';
      await until('containerd to agree with the log', async () =>
        recorded ? (await tasks()).includes(id) : !(await tasks()).includes(id),
      );
      assert.equal(await state(id), recorded ? 'CONTAINER_RUNNING' : 'CONTAINER_CREATED');
      await verifyClean();
      if (!recorded) await call('startContainer', { containerId: id });
      assert.equal(await state(id), 'CONTAINER_RUNNING');
      await call('removeContainer', { containerId: id });
      assert.deepEqual(await leftovers(), NOTHING);
    });
  }

  for (const step of STOP_STEPS) {
    it(`StopContainer killed after ${step}: after the restart the container is EXITED and its task gone`, async () => {
      const id = await container(true);
      await h.restart(`StopContainer.${step}=crash`);
      await crashes('stopContainer', { containerId: id, timeout: 0 });
      await h.restart();
      // The kill happened; the exit the dead process did not record is found from containerd.
      await until('the exit to be recorded', async () => (await state(id)) === 'CONTAINER_EXITED');
      await until('the exited task to be deleted', async () => !(await tasks()).includes(id));
      await verifyClean();
      await call('stopContainer', { containerId: id, timeout: 0 });
      await call('removeContainer', { containerId: id });
      assert.deepEqual(await leftovers(), NOTHING);
    });
  }

  for (const step of REMOVE_STEPS) {
    it(`RemoveContainer killed after ${step}: the retry removes what is left and frees the name`, async () => {
      const id = await container(true);
      const name = (await call<{ status: { metadata: { name: string } } }>('containerStatus', { containerId: id }))
        .status.metadata.name;
      await h.restart(`RemoveContainer.${step}=crash`);
      await crashes('removeContainer', { containerId: id });
      await h.restart();
      await call('removeContainer', { containerId: id });
      const listed = (await call<{ containers: Array<{ id: string }> }>('listContainers', {})).containers.map(
        (c) => c.id,
      );
      assert.equal(listed.includes(id), false);
      assert.deepEqual(await leftovers(), NOTHING);
      await verifyClean();
      // The name is free: the same name can be created again at once.
      const { containerId } = await call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: pod,
        config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
      });
      await call('removeContainer', { containerId });
    });
  }

  for (const step of PULL_STEPS) {
    it(`PullImage killed after ${step}: the restart leaves no pull lease, and the retry pulls the image`, async () => {
      const image = { image: `${registry.host}/test/crash:v1` };
      await h.imageCall('removeImage', { image });
      await h.restart(`PullImage.${step}=crash`);
      const pulled = h.imageCall('pullImage', { image });
      assert.ok((await pulled.catch((e: ServiceError) => e)) instanceof Error, 'PullImage fails: the service died');
      await h.restart();
      // A pull's lease keeps what it wrote for an hour; the restart gives it up at once.
      await until("the dead pull's lease to go", async () =>
        (await unaryCall<{ leases: Array<{ id: string }> }>(h.api.leases, 'List', { filters: [] })).leases.every(
          (l) => !l.id.startsWith('cri-ledger-pull-'),
        ),
      );
      await verifyClean();
      const { imageRef } = await h.imageCall<{ imageRef: string }>('pullImage', { image });
      assert.match(imageRef, /^sha256:[0-9a-f]{64}$/);
      const status = await h.imageCall<{ image: { id: string } | null }>('imageStatus', { image });
      assert.equal(status.image?.id, imageRef);
      await h.imageCall('removeImage', { image });
    });
  }
});
