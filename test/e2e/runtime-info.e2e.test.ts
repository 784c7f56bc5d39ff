import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  credentials,
  makeGenericClientConstructor,
  type Client,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { runtimeServiceV1, runtimeServiceV1alpha2 } from '../../src/adapters/cri/cri-definition.js';
import { runCli, startServe, tempRoot, type ServeProcess } from '../support/cli.js';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';

type Call = (
  request: object,
  callback: (error: ServiceError | null, response: Record<string, unknown>) => void,
) => void;

function criClient(definition: ServiceDefinition, socket: string): Client & Record<string, Call> {
  const Constructor = makeGenericClientConstructor(definition, 'RuntimeService');
  return new Constructor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, Call>;
}

function call<T = Record<string, unknown>>(
  client: Client & Record<string, Call>,
  method: string,
  request: object = {},
): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method]!.call(client, request, (error, response) => (error ? reject(error) : resolve(response as T))),
  );
}

interface Condition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

describe('runtime info over the CRI socket, with a private containerd', () => {
  let root: Awaited<ReturnType<typeof tempRoot>>;
  let containerd: PrivateContainerd;
  let serve: ServeProcess;
  let v1: Client & Record<string, Call>;
  const conditions = async (): Promise<Record<string, Condition>> => {
    const response = await call<{ status: { conditions: Condition[] } }>(v1, 'status', { verbose: false });
    return Object.fromEntries(response.status.conditions.map((c) => [c.type, c]));
  };

  before(async () => {
    root = await tempRoot('cri-ledger-runtime-info-');
    containerd = await startContainerd();
    const confDir = join(root.dir, 'cni-empty');
    await mkdir(confDir);
    serve = await startServe({
      root: root.dir,
      socket: join(root.dir, 'cri.sock'),
      args: ['--containerd-address', containerd.address, '--cni-conf-dir', confDir],
    });
    v1 = criClient(runtimeServiceV1, serve.socket);
  });

  after(async () => {
    v1?.close();
    await serve?.stop('SIGKILL');
    await containerd?.stop();
    await root?.cleanup();
  });

  it('answers Version with its name and the API version of the service called', async () => {
    assert.deepEqual(await call(v1, 'version', { version: 'v1' }), {
      version: '0.1.0',
      runtimeName: 'cri-ledger',
      runtimeVersion: '0.1.0',
      runtimeApiVersion: 'v1',
    });
    const old = criClient(runtimeServiceV1alpha2, serve.socket);
    try {
      assert.equal((await call(old, 'version', { version: 'v1alpha2' })).runtimeApiVersion, 'v1alpha2');
    } finally {
      old.close();
    }
  });

  it('reports RuntimeReady when containerd answers, and NetworkReady=false with the reason when no CNI config exists', async () => {
    const c = await conditions();
    assert.equal(c.RuntimeReady?.status, true, JSON.stringify(c.RuntimeReady));
    assert.equal(c.NetworkReady?.status, false);
    assert.ok(c.NetworkReady!.reason.length > 0);
    assert.match(c.NetworkReady!.message, /cni-empty/);
  });

  it('shows the effective configuration in verbose Status', async () => {
    const response = await call<{ info: Record<string, string> }>(v1, 'status', { verbose: true });
    const config = JSON.parse(response.info.config!);
    assert.equal(config.containerd.address, containerd.address);
    assert.equal(config.containerd.namespace, 'cri-ledger');
  });

  it('records the pod CIDR from UpdateRuntimeConfig as an event and shows it in verbose Status', async () => {
    await call(v1, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.244.3.0/24' } } });
    const response = await call<{ info: Record<string, string> }>(v1, 'status', { verbose: true });
    assert.equal(response.info.podCidr, '10.244.3.0/24');
    const events = await runCli(['events', '--type', 'PodCidrUpdated', '--json', '--socket', serve.socket]);
    assert.equal(events.code, 0, events.stderr);
    const [event] = events.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(event.stream, 'node-test-node');
    assert.deepEqual(event.data, { podCidr: '10.244.3.0/24' });
  });

  it('reports the cgroupfs driver', async () => {
    assert.deepEqual(await call(v1, 'runtimeConfig'), { linux: { cgroupDriver: 'CGROUPFS' } });
  });

  it('keeps serving when containerd goes away, reporting RuntimeReady=false with the reason', async () => {
    await containerd.stop();
    const deadline = Date.now() + 10_000;
    let c = await conditions();
    while (c.RuntimeReady?.status !== false && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      c = await conditions();
    }
    assert.equal(c.RuntimeReady?.status, false);
    assert.equal(c.RuntimeReady?.reason, 'ContainerdUnreachable');
    assert.match(c.RuntimeReady!.message, new RegExp(containerd.address.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
    assert.equal((await call(v1, 'version', { version: 'v1' })).runtimeName, 'cri-ledger');
  });
});
