import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import type { LedgerEvent, NewEvent } from '../../src/domain/events.js';
import { runCli, startServe, tempRoot, writeScenarioLog, type CliResult, type ServeProcess } from '../support/cli.js';
import { container, ev, streams } from '../support/fixtures.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import type { ScenarioAppend } from '../support/scenario.js';

/*
 * `cri-ledger explain` (and the stall in `status`) on one generated history, through
 * each source: a stopped service's directory, the running service's socket, and the
 * JetStream stream its relay filled. Each source must tell the same story.
 */

const PODS = 6;
const DEADLINE = '2026-11-28T10:00:00.000Z';
// Created after a stall, retried three times, then killed for memory.
const stuck = container('explain-stuck', 'pod-s', 'app_pod-s_ns_uid-s_0');
// Compensated at ContainerRecord.
const gone = container('explain-gone', 'pod-s', 'web_pod-s_ns_uid-s_0');
// Still in flight, stalled at its caller's deadline.
const hung = container('explain-hung', 'pod-s', 'side_pod-s_ns_uid-s_0');

const stalled = (step: string, correlationId: string): NewEvent<'OperationStalled'> => ({
  type: 'OperationStalled',
  correlationId,
  data: { operation: 'CreateContainer', step, elapsedMs: 1_200, deadline: DEADLINE },
});
const retry = (n: number): NewEvent<'RetryServed'> => ({
  type: 'RetryServed',
  correlationId: `req-retry-${n}`,
  data: { requestDigest: 'sha256:x', servedAt: DEADLINE },
});
const oom: NewEvent<'ContainerExited'> = {
  type: 'ContainerExited',
  correlationId: 'task-exit',
  data: { exitCode: 137, finishedAt: '2026-11-28T10:05:00.000Z', reason: 'OOMKilled', message: '' },
};

const s = streams.container(stuck);
const h = streams.container(hung);
const EXTRA: ScenarioAppend[] = [
  { stream: s, expected: 0, events: [ev.nameReserved(stuck, 'req-s'), ev.specGenerated('req-s')] },
  { stream: h, expected: 0, events: [ev.nameReserved(hung, 'req-h'), ev.specGenerated('req-h')] },
  { stream: s, expected: 2, events: [stalled('SnapshotPrepared', 'req-s')] },
  { stream: h, expected: 2, events: [stalled('ContainerRecord', 'req-h')] },
  { stream: s, expected: 3, events: [ev.snapshotPrepared(stuck, 'req-s'), ev.containerCreated(1, 'req-s')] },
  { stream: s, expected: 5, events: [retry(1)] },
  { stream: s, expected: 6, events: [retry(2)] },
  { stream: s, expected: 7, events: [retry(3)] },
  { stream: s, expected: 8, events: [ev.containerStarted(2)] },
  { stream: s, expected: 9, events: [oom] },
  { stream: streams.container(gone), expected: 0, events: [ev.nameReserved(gone, 'req-g'), ev.specGenerated('req-g')] },
  { stream: streams.container(gone), expected: 2, events: [ev.compensated(gone.name, 'ContainerRecord', 'req-g')] },
];

function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stdout;
}

function describeExplain(
  name: string,
  setup: () => { cli: (args: string[]) => Promise<CliResult>; events: () => LedgerEvent[] },
  concurrency: boolean,
): void {
  describe(`explain via ${name}`, { concurrency }, () => {
    it('explains a container by its full name: holder, creating request, stall, retries, exit', async () => {
      const { cli, events } = setup();
      const out = ok(await cli(['explain', stuck.name]));
      const ours = events().filter((e) => e.stream === s);
      const created = ours.find((e) => e.type === 'ContainerCreated')!;
      assert.match(out, new RegExp(`^container ${stuck.id}$`, 'm'));
      assert.match(
        out,
        new RegExp(
          `^name ${stuck.name} is held by container ${stuck.id.slice(0, 12)}, reserved by request req-s at ${ours[0]!.at}\\.$`,
          'm',
        ),
      );
      assert.match(out, new RegExp(`^created by request req-s at ${created.at}, `, 'm'));
      assert.match(
        out,
        new RegExp(
          `^stalled in SnapshotPrepared for \\S+ past the caller's deadline ${DEADLINE} \\(which passed 1\\.200s into the step\\), until the next event, SnapshotPrepared, at ${created.at}`,
          'm',
        ),
      );
      assert.match(out, /^retried 3 times with the same request; served from the ledger each time/m);
      assert.match(out, /^exited at 2026-11-28T10:05:00\.000Z with code 137, reason OOMKilled/m);
      assert.match(
        out,
        new RegExp(`^source: .*, ${ours.length} events \\(seq ${ours[0]!.seq}\\.\\.${ours.at(-1)!.seq}\\)\\.$`, 'm'),
      );
    });

    it('explains one in flight by its short name: the step it reached, its age, the stall still going on', async () => {
      const { cli } = setup();
      const out = ok(await cli(['explain', 'side']));
      assert.match(out, new RegExp(`^container ${hung.id}$`, 'm'));
      assert.match(
        out,
        /^in flight: CreateContainer \(request req-h\) began at .* the last step recorded is SpecGenerated at .*; age \S+\.$/m,
      );
      assert.match(out, /^stalled in ContainerRecord for \S+ past the caller's deadline .*, and it is still there\.$/m);
    });

    it('explains a compensated container by id prefix: the failed step, the error, what was undone', async () => {
      const { cli, events } = setup();
      const compensated = events().find((e) => e.type === 'Compensated' && e.stream === streams.container(gone))!;
      const out = ok(await cli(['explain', gone.id.slice(0, 16)]));
      assert.match(out, new RegExp(`^container ${gone.id}$`, 'm'));
      assert.match(
        out,
        new RegExp(
          `^CreateContainer failed at step ContainerRecord at ${compensated.at}: "snapshotter said no" \\(code Unknown\\)\\.$`,
          'm',
        ),
      );
      assert.match(out, /^undone, newest first: NameReserved ok\.$/m);
      assert.match(out, new RegExp(`^the name ${gone.name} was released\\.$`, 'm'));
    });

    it('refuses what the log never saw, and an ambiguous short name, with one line and exit 1', async () => {
      const { cli } = setup();
      const missing = await cli(['explain', 'nobody_pod_ns_uid_0']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /container or sandbox "nobody_pod_ns_uid_0" not found/);
      // Every pod of the scenario has an app0 container.
      const ambiguous = await cli(['explain', 'app0']);
      assert.equal(ambiguous.code, 1);
      assert.match(ambiguous.stderr, /"app0" is the name of \d+ containers or sandboxes/);
    });
  });
}

describe('cri-ledger explain', () => {
  let nats: NatsServer;
  let dbRoot: Awaited<ReturnType<typeof tempRoot>>;
  let serveRoot: Awaited<ReturnType<typeof tempRoot>>;
  let dbEvents: LedgerEvent[];
  let serveEvents: LedgerEvent[];
  let serve: ServeProcess;
  let socket: string;

  before(async () => {
    [nats, dbRoot, serveRoot] = await Promise.all([startNatsServer(), tempRoot(), tempRoot()]);
    [dbEvents, serveEvents] = await Promise.all([
      writeScenarioLog(join(dbRoot.dir, 'ledger'), { pods: PODS, seed: 3, extra: EXTRA }),
      writeScenarioLog(join(serveRoot.dir, 'ledger'), { pods: PODS, seed: 3, extra: EXTRA }),
    ]);
    socket = join(serveRoot.dir, 's.sock');
    // No containerd at that address: startup recovery waits for one, so the saga in
    // flight stays in flight while the tests read it.
    serve = await startServe({
      root: serveRoot.dir,
      socket,
      args: ['--nats-url', nats.url, '--containerd-address', join(serveRoot.dir, 'no-containerd.sock')],
    });
    const client = LedgerClient.connect(socket);
    try {
      const deadline = Date.now() + 10_000;
      while ((await client.status()).relay!.cursor < serveEvents.length) {
        if (Date.now() > deadline) throw new Error(`relay did not catch up:\n${serve.stderr()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
  });

  after(async () => {
    await serve?.stop('SIGKILL');
    await nats?.stop();
    await dbRoot?.cleanup();
    await serveRoot?.cleanup();
  });

  describeExplain(
    '--db',
    () => ({ cli: (args) => runCli([...args, '--db', join(dbRoot.dir, 'ledger')]), events: () => dbEvents }),
    false,
  );
  describeExplain(
    'the socket',
    () => ({ cli: (args) => runCli([...args, '--socket', socket]), events: () => serveEvents }),
    true,
  );
  describeExplain(
    '--nats',
    () => ({ cli: (args) => runCli([...args, '--nats', nats.url, '--node', 'test-node']), events: () => serveEvents }),
    true,
  );

  describe('a stall in status', () => {
    for (const [name, args] of [
      ['--db', () => ['--db', join(dbRoot.dir, 'ledger')]],
      ['the socket', () => ['--socket', socket]],
    ] as const) {
      it(`via ${name}: the operation in flight shows the step it stalled in`, async () => {
        const out = ok(await runCli(['status', ...args()]));
        assert.match(out, /^STREAM\s+OPERATION\s+NAME\s+STARTED SEQ\s+LAST STEP\s+AGE\s+CORRELATION\s+STALLED IN$/m);
        assert.match(
          out,
          new RegExp(
            `^container-${hung.id.slice(0, 12)}\\s+CreateContainer\\s+${hung.name}\\s+\\d+\\s+SpecGenerated\\s+\\S+\\s+req-h\\s+ContainerRecord$`,
            'm',
          ),
        );
        const json = JSON.parse(ok(await runCli(['status', '--json', ...args()]))) as {
          operations: Array<{ name: string; stalled?: { step: string; deadline: string } }>;
        };
        const op = json.operations.find((o) => o.name === hung.name);
        assert.deepEqual(
          { step: op?.stalled?.step, deadline: op?.stalled?.deadline },
          { step: 'ContainerRecord', deadline: DEADLINE },
        );
      });
    }

    it('via replay --db: the operations table as of the head shows the stalled step', async () => {
      const out = ok(await runCli(['replay', '--until', String(dbEvents.length), '--db', join(dbRoot.dir, 'ledger')]));
      assert.match(out, /^STREAM\s+OPERATION\s+NAME\s+STARTED SEQ\s+LAST STEP\s+AGE\s+CORRELATION\s+STALLED IN$/m);
      assert.match(
        out,
        new RegExp(
          `^container-${hung.id.slice(0, 12)}\\s+CreateContainer\\s+${hung.name}\\s+\\d+\\s+SpecGenerated\\s+\\S+\\s+req-h\\s+ContainerRecord$`,
          'm',
        ),
      );
    });

    it('via verify --db: the saga in flight shows the step it stalled in, and the stall is no violation', async () => {
      const out = ok(await runCli(['verify', '--db', join(dbRoot.dir, 'ledger')]));
      assert.match(out, /result: ok$/m);
      assert.match(
        out,
        new RegExp(
          `^container-${hung.id.slice(0, 12)}\\s+CreateContainer\\s+${hung.name}\\s+\\d+\\s+SpecGenerated\\s+\\S+\\s+req-h\\s+ContainerRecord$`,
          'm',
        ),
      );
    });
  });
});
