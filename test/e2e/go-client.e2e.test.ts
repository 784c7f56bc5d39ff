import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, status as Status, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { startGoCriClient, type GoCriClient } from '../support/go-cri-client.js';
import { removeAllPods } from '../support/pods.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { busyboxBase, composeImage, fileLayer, pushImage, type ComposedImage } from '../support/registry-images.js';

/*
 * The CRI socket as real clients reach it. kubelet before 1.30, crictl and critest are
 * grpc-go programs that send the socket path as the HTTP/2 :authority; the Go client
 * here dials the same way. grpc-js clients send whatever `grpc.default_authority` says
 * (localhost by default). The authority means nothing on a local socket: every form
 * must get the same answers.
 */

type Rpc = <T = Record<string, unknown>>(method: string, request: object) => Promise<T>;

/** A grpc-js RuntimeService client with `grpc.default_authority` set to `authority`. */
function grpcJsRuntime(socket: string, authority: string): { rpc: Rpc; close(): void } {
  const client = new Client(`unix://${socket}`, credentials.createInsecure(), { 'grpc.default_authority': authority });
  const rpc: Rpc = (method, request) =>
    new Promise((resolve, reject) => {
      const d = (runtimeServiceV1 as ServiceDefinition)[method]!;
      client.makeUnaryRequest(
        d.path,
        d.requestSerialize,
        d.responseDeserialize as (b: Buffer) => never,
        request,
        (e, r) => (e ? reject(e) : resolve(r!)),
      );
    });
  return { rpc, close: () => client.close() };
}

const failure = (p: Promise<unknown>) => p.then(() => assert.fail('the call succeeded')).catch((e: ServiceError) => e);

describe('CRI clients as they really dial the socket', () => {
  let h: CriHarness;
  let logDir = '';

  /** Version, then one pod with one container through its whole life, asserting what each step returns. */
  async function podLifecycle(rpc: Rpc, name: string): Promise<void> {
    const version = await rpc<{ runtimeName: string; runtimeApiVersion: string }>('Version', { version: 'v1' });
    assert.deepEqual([version.runtimeName, version.runtimeApiVersion], ['cri-ledger', 'v1']);
    const pod = {
      metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
      logDirectory: logDir,
      linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const { podSandboxId } = await rpc<{ podSandboxId: string }>('RunPodSandbox', { config: pod });
    assert.match(podSandboxId, /^[0-9a-f]{64}$/);
    const config = {
      metadata: { name: 'app', attempt: 0 },
      image: { image: 'busybox' },
      command: ['sh', '-c'],
      // sh runs the trap after the current sleep: a graceful stop exits 0.
      args: ['trap "exit 0" TERM; while true; do sleep 0.1; done'],
      logPath: `${name}-app.log`,
    };
    const { containerId } = await rpc<{ containerId: string }>('CreateContainer', {
      podSandboxId,
      sandboxConfig: pod,
      config,
    });
    assert.match(containerId, /^[0-9a-f]{64}$/);
    type StatusReply = {
      status: { id: string; state: string; exitCode: number; reason: string; metadata: { name: string } };
    };
    const status = () => rpc<StatusReply>('ContainerStatus', { containerId });
    assert.equal((await status()).status.state, 'CONTAINER_CREATED');
    await rpc('StartContainer', { containerId });
    const running = (await status()).status;
    assert.deepEqual([running.id, running.state, running.metadata.name], [containerId, 'CONTAINER_RUNNING', 'app']);
    const cmd = ['sh', '-c', 'echo $((6 * 7)); echo warn >&2; exit 3'];
    const exec = await rpc<{ stdout: Buffer; stderr: Buffer; exitCode: number }>('ExecSync', {
      containerId,
      cmd,
      timeout: 10,
    });
    assert.deepEqual([exec.stdout.toString(), exec.stderr.toString(), exec.exitCode], ['42\n', 'warn\n', 3]);
    await rpc('StopContainer', { containerId, timeout: 10 });
    const stopped = (await status()).status;
    assert.deepEqual([stopped.state, stopped.exitCode, stopped.reason], ['CONTAINER_EXITED', 0, 'Completed']);
    await rpc('RemoveContainer', { containerId });
    assert.equal((await failure(status())).code, Status.NOT_FOUND);
    await rpc('StopPodSandbox', { podSandboxId });
    const podStatus = await rpc<{ status: { state: string } }>('PodSandboxStatus', { podSandboxId });
    assert.equal(podStatus.status.state, 'SANDBOX_NOTREADY');
    await rpc('RemovePodSandbox', { podSandboxId });
    const left = await rpc<{ items: Array<{ id: string }> }>('ListPodSandbox', { filter: { id: podSandboxId } });
    assert.deepEqual(left.items, []);
  }

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-goclient-' });
    logDir = join(h.root, 'pod-logs');
    await mkdir(logDir);
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  describe('grpc-go, dialing as kubelet does (:authority is the socket path)', () => {
    let go: GoCriClient;
    let registry: TestRegistry;
    let pushed: ComposedImage;

    before(async () => {
      go = startGoCriClient(h.socket);
      registry = await startRegistry();
      await mkdir(join(h.registryConfigDir, registry.host), { recursive: true });
      await writeFile(join(h.registryConfigDir, registry.host, 'hosts.toml'), `server = "${registry.url}"\n`);
      pushed = composeImage(await busyboxBase(), {
        extraLayers: [await fileLayer({ 'etc/go-client.txt': 'pulled by grpc-go\n' })],
      });
      await pushImage(registry, 'test/go-client', pushed, 'v1');
    });
    after(async () => {
      await go?.close();
      await registry?.stop();
    });

    it('answers Version on runtime.v1 and runtime.v1alpha2', async () => {
      const v1 = await go.call<{ runtimeName: string; runtimeApiVersion: string }>(
        'runtime.v1.RuntimeService',
        'Version',
        { version: 'v1' },
      );
      assert.deepEqual([v1.runtimeName, v1.runtimeApiVersion], ['cri-ledger', 'v1']);
      const old = await go.call<{ runtimeName: string; runtimeApiVersion: string }>(
        'runtime.v1alpha2.RuntimeService',
        'Version',
        { version: 'v1alpha2' },
      );
      assert.deepEqual([old.runtimeName, old.runtimeApiVersion], ['cri-ledger', 'v1alpha2']);
    });

    it('runs a pod and a container through their whole life', () =>
      podLifecycle((method, request) => go.runtime(method, request), 'go-kubelet'));

    it('answers concurrent calls on one connection', async () => {
      const versions = await Promise.all(
        Array.from({ length: 8 }, () => go.runtime<{ runtimeName: string }>('Version', {})),
      );
      assert.deepEqual(new Set(versions.map((v) => v.runtimeName)), new Set(['cri-ledger']));
    });

    it('pulls an image from a registry and lists it', async () => {
      const ref = `${registry.host}/test/go-client:v1`;
      const { imageRef } = await go.image<{ imageRef: string }>('PullImage', { image: { image: ref } }, 120_000);
      assert.equal(imageRef, pushed.config.digest);
      const { images } = await go.image<{ images: Array<{ id: string; repoTags: string[] }> }>('ListImages', {});
      assert.deepEqual(images.find((i) => i.id === pushed.config.digest)?.repoTags, [ref]);
    });

    it('gets gRPC status codes back, as grpc-go reports them', async () => {
      const missing = await failure(go.runtime('ContainerStatus', { containerId: 'f'.repeat(64) }));
      assert.equal(missing.code, Status.NOT_FOUND);
      assert.match(missing.details, /f{12}/);
    });
  });

  // grpc-js ignores an empty grpc.default_authority (internal-channel.js tests it for
  // truthiness) and sends its default for unix targets, `localhost`: the '' case checks
  // that setting it breaks nothing, not that an empty :authority is served.
  const forms: Array<[string, (socket: string) => string]> = [
    ['the socket path', (socket) => socket],
    ['a unix:// URI', (socket) => `unix://${socket}`],
    ['a unix: URI', (socket) => `unix:${socket}`],
    ['localhost', () => 'localhost'],
    ['an empty string', () => ''],
  ];
  describe('grpc-js with grpc.default_authority set to each form', () => {
    forms.forEach(([label, authority], i) => {
      it(`serves Version and a pod's life with :authority ${label}`, async () => {
        const client = grpcJsRuntime(h.socket, authority(h.socket));
        try {
          await podLifecycle(client.rpc, `authority-${i}`);
        } finally {
          client.close();
        }
      });
    });
  });
});
