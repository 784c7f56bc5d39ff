import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Client,
  type ClientReadableStream,
  credentials,
  makeGenericClientConstructor,
  type ServiceError,
  status as Status,
} from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';
import { until } from '../support/until.js';

/*
 * GetContainerEvents as kubelet's evented PLEG uses it: subscribe, then run a pod's whole
 * life; two subscribers see the same; a subscriber that stops reading is ended with
 * RESOURCE_EXHAUSTED once it is more than the configured lag behind; a restart of the
 * service ends the stream with UNAVAILABLE and a new subscription sees what follows.
 */

const MAX_LAG = 40;

interface Received {
  containerId: string;
  containerEventType: string;
  createdAt: string;
  podSandboxStatus: { id: string; state: string } | null;
  containersStatuses: Array<{ id: string; state: string }>;
}

interface Subscription {
  events: Received[];
  ended: Promise<ServiceError | undefined>;
  stream: ClientReadableStream<Received>;
}

describe('GetContainerEvents, served from the log', () => {
  let h: CriHarness;
  let client: Client & { GetContainerEvents(request: object): ClientReadableStream<Received> };
  const connect = (): void => {
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    client = new Constructor(`unix://${h.socket}`, credentials.createInsecure()) as unknown as typeof client;
  };
  const subscribe = async (): Promise<Subscription> => {
    const stream = client.GetContainerEvents({});
    const events: Received[] = [];
    stream.on('data', (e: Received) => events.push(e));
    const ended = new Promise<ServiceError | undefined>((resolve) => {
      stream.on('error', (e: ServiceError) => resolve(e));
      stream.on('end', () => resolve(undefined));
    });
    // The subscription starts at "now" once the server has the call: let it get there.
    await new Promise((r) => setTimeout(r, 300));
    return { events, ended, stream };
  };
  const pod = (name: string) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  });
  const runPod = async (name: string): Promise<string> =>
    (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod(name) })).podSandboxId;
  const create = async (podSandboxId: string, podName: string, name: string): Promise<string> =>
    (
      await h.call<{ containerId: string }>('createContainer', {
        podSandboxId,
        sandboxConfig: pod(podName),
        config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
      })
    ).containerId;

  before(async () => {
    h = await startCriHarness({
      prefix: 'cri-ledger-e2e-events-',
      env: { CRI_LEDGER_CONTAINER_EVENTS_MAX_LAG: String(MAX_LAG) },
    });
    connect();
  });
  after(async () => {
    client?.close();
    if (h) await removeAllPods(h).catch(() => undefined);
    await h?.cleanup();
  });

  it("tells two subscribers a pod's whole life, with the statuses as they stood after each event", async () => {
    const [first, second] = [await subscribe(), await subscribe()];
    const podId = await runPod('life');
    const id = await create(podId, 'life', 'app');
    await h.call('startContainer', { containerId: id });
    await h.call('stopContainer', { containerId: id, timeout: 0 });
    await h.call('removeContainer', { containerId: id });
    await h.call('stopPodSandbox', { podSandboxId: podId });
    await h.call('removePodSandbox', { podSandboxId: podId });
    const expected = [
      [podId, 'CONTAINER_CREATED_EVENT'],
      [podId, 'CONTAINER_STARTED_EVENT'],
      [id, 'CONTAINER_CREATED_EVENT'],
      [id, 'CONTAINER_STARTED_EVENT'],
      [id, 'CONTAINER_STOPPED_EVENT'],
      [id, 'CONTAINER_DELETED_EVENT'],
      [podId, 'CONTAINER_STOPPED_EVENT'],
      [podId, 'CONTAINER_DELETED_EVENT'],
    ];
    for (const s of [first, second]) {
      await until('every event', async () => s.events.length >= expected.length);
      assert.deepEqual(
        s.events.map((e) => [e.containerId, e.containerEventType]),
        expected,
      );
    }
    const [, , created, started, stopped, deleted, podStopped] = first.events;
    // As it stood right after each event, not as it was when the response was written.
    assert.deepEqual(
      created!.containersStatuses.map((c) => [c.id, c.state]),
      [[id, 'CONTAINER_CREATED']],
    );
    assert.deepEqual(
      started!.containersStatuses.map((c) => [c.id, c.state]),
      [[id, 'CONTAINER_RUNNING']],
    );
    assert.deepEqual(
      stopped!.containersStatuses.map((c) => [c.id, c.state]),
      [[id, 'CONTAINER_EXITED']],
    );
    assert.deepEqual(deleted!.containersStatuses, []);
    assert.equal(started!.podSandboxStatus?.state, 'SANDBOX_READY');
    assert.equal(podStopped!.podSandboxStatus?.state, 'SANDBOX_NOTREADY');
    assert.equal(first.events[7]!.podSandboxStatus?.id, podId, 'a removed pod still comes with its last status');
    const ns = first.events.map((e) => BigInt(e.createdAt));
    assert.ok(
      ns.every((t, i) => t > 1_700_000_000_000_000_000n && (i === 0 || t >= ns[i - 1]!)),
      'created_at in ns, in order',
    );
    for (const s of [first, second]) s.stream.cancel();
  });

  it('ends a subscriber that stops reading once it is too far behind, with RESOURCE_EXHAUSTED', async () => {
    const slow = await subscribe();
    slow.stream.pause();
    const podId = await runPod('slow');
    // Each cycle is five events, two of them CRI events carrying the pod's statuses (about
    // 1 KB each). The client's HTTP/2 window (64 KiB) and the server's stream buffer fill
    // within about 100 cycles; the server then waits, and the log moves on past MAX_LAG.
    const cycles = 200;
    for (let i = 0; i < cycles; i++) {
      const id = await create(podId, 'slow', `c${i}`);
      await h.call('removeContainer', { containerId: id });
    }
    // Its status comes after the responses queued before it: read them.
    slow.stream.resume();
    const error = await slow.ended;
    assert.equal(error?.code, Status.RESOURCE_EXHAUSTED, `ended after ${cycles} cycles: ${error?.message}`);
    assert.match(error?.details ?? '', new RegExp(`more than ${MAX_LAG} events behind`));
    assert.ok(slow.events.length < cycles * 2, 'it was ended before it caught up');
  });

  it('ends the stream with UNAVAILABLE when the service restarts; a new subscription loses nothing after it', async () => {
    const before = await subscribe();
    await h.restart();
    const error = await before.ended;
    assert.equal(error?.code, Status.UNAVAILABLE, error?.message);
    client.close();
    connect();
    const again = await subscribe();
    const podId = await runPod('after-restart');
    await until('the pod events', async () => again.events.length >= 2);
    assert.deepEqual(
      again.events.map((e) => [e.containerId, e.containerEventType]),
      [
        [podId, 'CONTAINER_CREATED_EVENT'],
        [podId, 'CONTAINER_STARTED_EVENT'],
      ],
    );
    again.stream.cancel();
  });
});
