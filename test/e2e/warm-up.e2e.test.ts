import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { runCli, startServe, tempRoot } from '../support/cli.js';
import { until } from '../support/until.js';

/*
 * The start-up warm-up (warmUpCalls): the service calls itself on a private socket in
 * its state dir right after it serves. It must serve kubelet meanwhile, write nothing,
 * leave no socket behind, and stop when the service stops. No containerd here: the
 * warm-up's calls answer NOT_FOUND or UNAVAILABLE, which it takes as they come.
 */

type Call = (
  request: object,
  callback: (error: ServiceError | null, response: Record<string, unknown>) => void,
) => void;

function version(socket: string): Promise<Record<string, unknown>> {
  const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
  const client = new Constructor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, Call>;
  return new Promise((resolve, reject) =>
    client.Version!.call(client, { version: 'v1' }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    }),
  );
}

const warmUpSockets = async (stateDir: string): Promise<string[]> =>
  (await readdir(stateDir).catch(() => [] as string[])).filter((name) => name.startsWith('warm-up-'));

describe('the start-up warm-up', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    root = await tempRoot('cri-ledger-e2e-warm-up-');
  });
  after(() => root?.cleanup());

  it('serves while it runs, makes its calls, writes nothing and leaves no socket', async () => {
    const dir = join(root.dir, 'a');
    const serve = await startServe({
      root: dir,
      socket: join(dir, 'cri.sock'),
      warmUp: true,
      args: ['--containerd-address', join(dir, 'no-containerd.sock'), '--warm-up-calls', '400', '--log-level', 'debug'],
    });
    try {
      assert.equal((await version(serve.socket)).runtimeName, 'cri-ledger', 'served during the warm-up');
      await until('the warm-up to end', async () => serve.stderr().includes('"msg":"warmed up"'), 30_000);
      const line = serve
        .stderr()
        .split('\n')
        .find((l) => l.includes('"msg":"warmed up"'))!;
      assert.equal(JSON.parse(line).calls, 400);
      assert.deepEqual(await warmUpSockets(join(dir, 'state')), []);
    } finally {
      assert.equal((await serve.stop('SIGTERM')).code, 0);
    }
    const events = await runCli(['events', '--db', join(dir, 'ledger'), '--json']);
    assert.equal(events.code, 0, events.stderr);
    assert.doesNotMatch(events.stdout, /warm-up/, 'no call of the warm-up is on the record');
  });

  it('stops with the service, which exits cleanly', async () => {
    const dir = join(root.dir, 'b');
    const serve = await startServe({
      root: dir,
      socket: join(dir, 'cri.sock'),
      warmUp: true,
      args: ['--containerd-address', join(dir, 'no-containerd.sock'), '--warm-up-calls', '100000'],
    });
    await until('the warm-up socket', async () => (await warmUpSockets(join(dir, 'state'))).length > 0, 30_000);
    assert.equal((await serve.stop('SIGTERM', 30_000)).code, 0);
    assert.deepEqual(await warmUpSockets(join(dir, 'state')), []);
  });
});
