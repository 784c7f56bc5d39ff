import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status as Status,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { decodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';

/*
 * The stall watchdog on real containerd: a CreateContainer whose snapshot step is held
 * (failpoint delay) past the client's deadline gets DEADLINE_EXCEEDED, keeps running,
 * and the log records one OperationStalled for that step, which `explain` reports. A
 * call that finishes inside its deadline records none.
 */

/*
 * The held step and the client's deadline are seconds apart, far from scheduling noise:
 * the steps before the held one must end before the deadline, and the caller's answer
 * (at its deadline) must come before the held step lets go, even on a loaded machine.
 */
const DELAY_MS = 15_000;
const CLIENT_DEADLINE_MS = 4_000;

type Call = (
  request: object,
  metadata: Metadata,
  options: { deadline: number },
  callback: (error: ServiceError | null, response: Record<string, unknown>) => void,
) => void;

async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('stall watchdog end to end', () => {
  let h: CriHarness;
  let client: Client & Record<string, Call>;
  let podId = '';
  const podConfig = {
    metadata: { name: 'stall', uid: 'uid-stall', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const request = (name: string) => ({
    podSandboxId: podId,
    sandboxConfig: podConfig,
    config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' } },
  });
  const callWithDeadline = (
    method: string,
    body: object,
    ms: number,
    correlationId: string,
  ): Promise<Record<string, unknown>> => {
    const md = new Metadata();
    md.set('x-correlation-id', correlationId);
    return new Promise((resolve, reject) =>
      client[method]!.call(client, body, md, { deadline: Date.now() + ms }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  };
  const events = async (filter: { types?: string[]; streams?: string[] }): Promise<LedgerEvent[]> => {
    const ledger = LedgerClient.connect(h.socket);
    try {
      const out: LedgerEvent[] = [];
      for await (const record of ledger.readEvents(filter as never))
        out.push(decodeEvent(record.json, Number(record.seq)));
      return out;
    } finally {
      ledger.close();
    }
  };
  const reservedAs = async (name: string): Promise<LedgerEvent<'NameReserved'> | undefined> =>
    (await events({ types: ['NameReserved'] })).find(
      (e): e is LedgerEvent<'NameReserved'> => e.type === 'NameReserved' && e.data.metadata.name === name,
    );

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-stall-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
    await h.restart(`CreateContainer.SnapshotPrepared=delay(${DELAY_MS})`);
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    client = new Constructor(`unix://${h.socket}`, credentials.createInsecure()) as Client & Record<string, Call>;
  });
  after(async () => {
    client?.close();
    await h?.cleanup();
  });

  it("records one OperationStalled for the step held past the caller's deadline, and explain says so", async () => {
    const body = request('slow');
    const started = Date.now();
    const error = (await callWithDeadline('createContainer', body, CLIENT_DEADLINE_MS, 'req-stall').catch(
      (e: ServiceError) => e,
    )) as ServiceError;
    assert.equal(error.code, Status.DEADLINE_EXCEEDED, error.details);
    assert.ok(Date.now() - started < DELAY_MS, 'the caller was answered at its deadline, not after the step');

    const reserved = await until(() => reservedAs('slow'), 'the NameReserved of "slow"');
    const stream = reserved.stream;
    // While the step is still held, the stall is already in the log.
    const stall = await until(
      async () =>
        (await events({ streams: [stream] })).find(
          (e): e is LedgerEvent<'OperationStalled'> => e.type === 'OperationStalled',
        ),
      'OperationStalled',
    );
    assert.equal(stall.data.operation, 'CreateContainer');
    assert.equal(stall.data.step, 'SnapshotPrepared');
    assert.equal(stall.correlationId, 'req-stall');
    const deadlineMs = Date.parse(stall.data.deadline);
    assert.ok(
      deadlineMs >= started + CLIENT_DEADLINE_MS - 50 && deadlineMs <= started + CLIENT_DEADLINE_MS + 5_000,
      `deadline ${stall.data.deadline} is the client's`,
    );
    assert.ok(
      stall.data.elapsedMs > 0 && stall.data.elapsedMs < CLIENT_DEADLINE_MS,
      `elapsedMs ${stall.data.elapsedMs}`,
    );

    // The first call keeps going past its caller's deadline and creates the container;
    // its id reached nobody, which ResultUndelivered records (docs/recovery.md).
    const all = await until(
      async () => {
        const es = await events({ streams: [stream] });
        return es.some((e) => e.type === 'ResultUndelivered') ? es : undefined;
      },
      'ResultUndelivered',
      DELAY_MS + 20_000,
    );
    assert.deepEqual(
      all.map((e) => e.type),
      [
        'NameReserved',
        'SpecGenerated',
        'OperationStalled',
        'SnapshotPrepared',
        'ContainerCreated',
        'ResultUndelivered',
      ],
    );

    // kubelet's retry of the same request gets the same id, from the ledger.
    const retried = await callWithDeadline('createContainer', body, 10_000, 'req-retry');
    assert.equal(retried.containerId, reserved.data.containerId);

    const result = await runCli(['explain', reserved.data.name, '--socket', h.socket]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^container ${reserved.data.containerId}$`, 'm'));
    assert.match(
      result.stdout,
      new RegExp(
        `^name ${reserved.data.name} is held by container ${reserved.data.containerId.slice(0, 12)}, reserved by request req-stall`,
        'm',
      ),
    );
    assert.match(
      result.stdout,
      new RegExp(`^stalled in SnapshotPrepared for \\S+ past the caller's deadline ${stall.data.deadline}`, 'm'),
    );
    assert.match(result.stdout, /^retried once with the same request; served from the ledger/m);
    const timeline = await runCli(['timeline', reserved.data.containerId, '--socket', h.socket]);
    assert.match(
      timeline.stdout,
      /OperationStalled\s+req-stall\s+CreateContainer still in SnapshotPrepared at the caller's deadline/,
    );
  });

  it('records nothing for a call that ends inside its deadline', async () => {
    const { containerId } = (await callWithDeadline(
      'createContainer',
      request('quick'),
      DELAY_MS + 15_000,
      'req-quick',
    )) as { containerId: string };
    const stream = `container-${containerId}`;
    const types = (await events({ streams: [stream] })).map((e) => e.type);
    assert.deepEqual(types, ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated']);
    assert.equal(
      (await events({ types: ['OperationStalled'] })).length,
      1,
      "only the first test's stall is in the log",
    );
  });
});
