import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Level } from 'level';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { encodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { Projections } from '../../src/projections/projections.js';
import { runCli, startServe, tempRoot, writeScenarioLog, type CliResult, type ServeProcess } from '../support/cli.js';
import { container, ev, streams } from '../support/fixtures.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import type { ScenarioAppend } from '../support/scenario.js';

/*
 * The read commands against one generated history, through each source: a stopped
 * service's directory (--db), the running service's socket, and the JetStream stream the
 * service's relay filled (--nats). Every source must tell the same story.
 */

const SEED = 6;
const PODS = 10;
// A name reused: the first attempt is compensated, the second creates the container.
const reusedName = 'web_pod-r_ns_uid-r_0';
const first = container('reuse-1', 'pod-r', reusedName);
const second = container('reuse-2', 'pod-r', reusedName);
const EXTRA: ScenarioAppend[] = [
  {
    stream: streams.container(first),
    expected: 0,
    events: [ev.nameReserved(first, 'req-r1'), ev.specGenerated('req-r1')],
  },
  { stream: streams.container(first), expected: 2, events: [ev.compensated(reusedName, 'SnapshotPrepared', 'req-r1')] },
  {
    stream: streams.container(second),
    expected: 0,
    events: [ev.nameReserved(second, 'req-r2'), ev.specGenerated('req-r2')],
  },
  {
    stream: streams.container(second),
    expected: 2,
    events: [ev.snapshotPrepared(second, 'req-r2'), ev.containerCreated(1, 'req-r2')],
  },
];

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}

function folded(events: readonly LedgerEvent[]): unknown {
  const p = new Projections();
  p.applyAll(events);
  return JSON.parse(JSON.stringify(p.snapshot()));
}

function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stdout;
}

/** The assertions every source must pass, given how to run a command against it. */
function describeReadCommands(
  name: string,
  setup: () => { cli: (args: string[]) => Promise<CliResult>; events: () => LedgerEvent[] },
  concurrency: boolean,
): void {
  // Read-only commands may run side by side, except on --db: one process holds its lock.
  describe(`read commands via ${name}`, { concurrency }, () => {
    it('events --json prints every event as its exact stored JSON', async () => {
      const { cli, events } = setup();
      assert.deepEqual(lines(ok(await cli(['events', '--json']))), events().map(encodeEvent));
    });

    it('events prints aligned columns with shortened stream ids and a summary', async () => {
      const { cli, events } = setup();
      const out = lines(ok(await cli(['events', '--type', 'Compensated'])));
      const compensated = events().filter((e) => e.type === 'Compensated');
      assert.equal(out.length, compensated.length + 1);
      assert.match(out[0]!, /^\s*SEQ\s+TIME\s+STREAM\s+VER\s+TYPE\s+CORRELATION\s+SUMMARY$/);
      const typeColumn = out[0]!.indexOf('TYPE');
      out.slice(1).forEach((row, i) => {
        const e = compensated[i]!;
        assert.equal(row.indexOf('Compensated'), typeColumn, `TYPE column aligned in: ${row}`);
        assert.match(
          row,
          new RegExp(`^\\s*${e.seq}\\s+${e.at}\\s+${e.stream.slice(0, e.stream.indexOf('-') + 13)}\\s`),
        );
        assert.ok(!row.includes(e.stream), 'the full 64-hex id is shortened');
        assert.match(row, /failed at \w+: "snapshotter said no"; undid 1/);
      });
    });

    it('events --from and --stream narrow the output', async () => {
      const { cli, events } = setup();
      const stream = streams.container(second);
      const from = events().length - 1;
      const out = lines(ok(await cli(['events', '--json', '--stream', stream, '--from', String(from)])));
      assert.deepEqual(
        out,
        events()
          .filter((e) => e.stream === stream && e.seq >= from)
          .map(encodeEvent),
      );
      assert.equal(out.length, 2);
    });

    it('replay --until SEQ --json shows the projections as they stood at that seq', async () => {
      const { cli, events } = setup();
      const snapshot = JSON.parse(ok(await cli(['replay', '--until', '120', '--json']))) as { position: number };
      assert.deepEqual(snapshot, folded(events().slice(0, 120)));
      assert.equal(snapshot.position, 120);
    });

    it('replay --until TIME prints the tables as of the last event at or before that time', async () => {
      const { cli, events } = setup();
      const at = events()[79]!.at;
      const out = ok(await cli(['replay', '--until', at]));
      const expected = new Projections();
      expected.applyAll(events().filter((e) => Date.parse(e.at) <= Date.parse(at)));
      assert.match(out, new RegExp(`^as of seq 80 \\(${at}\\)`));
      assert.match(out, new RegExp(`CONTAINERS \\(${expected.containers.size}\\)`));
      assert.match(out, new RegExp(`OPERATIONS IN FLIGHT \\(${expected.operations.size}\\)`));
      const [someId] = expected.containers.keys();
      assert.ok(out.includes(someId!.slice(0, 12)));
    });

    it('timeline NAME follows the newest holder of a reused name, with step durations and a total', async () => {
      const { cli, events } = setup();
      const result = await cli(['timeline', reusedName]);
      const out = ok(result);
      assert.match(out, new RegExp(`^container ${second.id}$`, 'm'));
      const rows = lines(out).filter((l) => /^\s*\d+\s+\d{4}-/.test(l));
      assert.deepEqual(
        rows.map((r) => r.trim().split(/\s+/)[3]),
        ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'],
      );
      // Two appends of two events each, 10ms apart: events of one append share a time.
      assert.deepEqual(
        rows.map((r) => r.trim().split(/\s+/)[2]),
        ['+0ms', '+0ms', '+10ms', '+0ms'],
      );
      assert.match(out, /total 10ms over 4 events/);
      assert.match(result.stderr, new RegExp(`also held by ${first.id.slice(0, 12)}`));
      assert.ok(events().some((e) => e.stream === streams.container(first) && e.type === 'Compensated'));
    });

    it('timeline ID-PREFIX shows a compensated container that no projection holds any more', async () => {
      const { cli } = setup();
      const out = ok(await cli(['timeline', first.id.slice(0, 10)]));
      assert.match(out, new RegExp(`^container ${first.id}$`, 'm'));
      assert.match(out, /Compensated\s+req-r1\s+CreateContainer failed at SnapshotPrepared/);
      assert.match(out, /last: Compensated$/m);
    });

    it('timeline of something never seen exits 1 with one line', async () => {
      const { cli } = setup();
      const result = await cli(['timeline', 'nobody_pod_ns_uid_0']);
      assert.equal(result.code, 1);
      assert.equal(lines(result.stderr).length, 1);
      assert.match(result.stderr, /container or sandbox "nobody_pod_ns_uid_0" not found/);
    });

    it('verify passes a good log, listing the sagas in flight', async () => {
      const { cli, events } = setup();
      const expected = new Projections();
      expected.applyAll(events());
      const out = ok(await cli(['verify']));
      assert.match(out, new RegExp(`verified ${events().length} records \\(seq 1\\.\\.${events().length}\\)`));
      assert.match(out, /result: ok$/m);
      assert.match(out, new RegExp(`IN FLIGHT \\(${expected.operations.size}\\)`));
      for (const op of expected.operations.values()) {
        assert.match(
          out,
          new RegExp(
            `^container-${op.id.slice(0, 12)}\\s+CreateContainer\\s+${op.name}\\s+${op.startedSeq}\\s+${op.lastStep}\\s`,
            'm',
          ),
        );
      }
    });
  });
}

describe('cri-ledger CLI', () => {
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
      writeScenarioLog(join(dbRoot.dir, 'ledger'), { pods: PODS, seed: SEED, extra: EXTRA }),
      writeScenarioLog(join(serveRoot.dir, 'ledger'), { pods: PODS, seed: SEED, extra: EXTRA }),
    ]);
    socket = join(serveRoot.dir, 's.sock');
    serve = await startServe({ root: serveRoot.dir, socket, args: ['--nats-url', nats.url] });
    // The relay publishes the whole log; wait until JetStream has acked all of it.
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

  describeReadCommands(
    '--db',
    () => ({ cli: (args) => runCli([...args, '--db', join(dbRoot.dir, 'ledger')]), events: () => dbEvents }),
    false,
  );
  describeReadCommands(
    'the socket',
    () => ({ cli: (args) => runCli([...args, '--socket', socket]), events: () => serveEvents }),
    true,
  );
  describeReadCommands(
    '--nats',
    () => ({ cli: (args) => runCli([...args, '--nats', nats.url, '--node', 'test-node']), events: () => serveEvents }),
    true,
  );

  describe('status', { concurrency: true }, () => {
    it('via --db: head, relay cursor and lag, counts', async () => {
      const out = ok(await runCli(['status', '--db', join(dbRoot.dir, 'ledger')]));
      const expected = new Projections();
      expected.applyAll(dbEvents);
      assert.match(out, new RegExp(`^head\\s+${dbEvents.length} \\(${dbEvents.at(-1)!.at}\\)$`, 'm'));
      assert.match(out, new RegExp(`^relay\\s+service stopped; cursor 0, lag ${dbEvents.length}$`, 'm'));
      assert.match(out, new RegExp(`^containers\\s+${expected.containers.size}$`, 'm'));
      assert.match(out, new RegExp(`^in flight\\s+${expected.operations.size}$`, 'm'));
    });

    it('via the socket: the relay is on, connected and caught up', async () => {
      const status = JSON.parse(ok(await runCli(['status', '--json', '--socket', socket])));
      assert.equal(status.head, serveEvents.length);
      assert.deepEqual(
        {
          running: status.relay.running,
          enabled: status.relay.enabled,
          connected: status.relay.connected,
          cursor: status.relay.cursor,
          lag: status.relay.lag,
        },
        { running: true, enabled: true, connected: true, cursor: serveEvents.length, lag: 0 },
      );
      const text = ok(await runCli(['status', '--socket', socket]));
      // One server in nats.url: the one it is on, without "one of N".
      const port = new URL(nats.url).port;
      assert.match(
        text,
        new RegExp(
          `^relay\\s+on \\(stream CRI_LEDGER\\), connected to 127\\.0\\.0\\.1:${port}; cursor \\d+, lag 0`,
          'm',
        ),
      );
      assert.match(
        text,
        /^stream limits\s+replicas 1, max age 0 \(unlimited\), max bytes 0 \(unlimited\), duplicate window 10m$/m,
      );
    });

    it("via --nats: the stream, and this node's subjects and head", async () => {
      const out = ok(await runCli(['status', '--nats', nats.url, '--node', 'test-node']));
      assert.match(out, new RegExp(`^messages\\s+${serveEvents.length} \\(`, 'm'));
      assert.match(out, new RegExp(`^subjects\\s+cri-ledger\\.test-node\\.>: ${serveEvents.length} messages`, 'm'));
      assert.match(out, new RegExp(`^node head\\s+ledger seq ${serveEvents.length} `, 'm'));
    });

    it('via --nats for a node the stream does not hold: says to pass --node', async () => {
      const result = await runCli(['events', '--nats', nats.url, '--node', 'elsewhere']);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /holds no events of node "elsewhere".*pass --node/);
    });
  });

  describe('sources and failures', { concurrency: true }, () => {
    it("--db on the running service's directory says to drop --db", async () => {
      const result = await runCli(['events', '--db', join(serveRoot.dir, 'ledger')]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /held by the running cri-ledger service; drop --db/);
    });

    it('the socket of a service that is not running: one line with what to do', async () => {
      const result = await runCli(['status', '--socket', join(dbRoot.dir, 'none.sock')]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /cannot reach the cri-ledger service at .*none\.sock .*--db/);
      assert.equal(lines(result.stderr).length, 1);
    });

    it('--follow on a --db log is refused', async () => {
      const result = await runCli(['events', '--follow', '--db', join(dbRoot.dir, 'ledger')]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /--follow: a --db log cannot change/);
    });

    it('verify reports every undecodable record and a missing seq, and exits non-zero', async () => {
      const tampered = await tempRoot();
      try {
        const dir = join(tampered.dir, 'ledger');
        const events = await writeScenarioLog(dir, { pods: 4, seed: SEED });
        const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
        const key = (seq: number): string => `e!${String(seq).padStart(16, '0')}`;
        // A record mid-stream whose payload breaks its schema while its envelope stays intact.
        const victim = events.find(
          (e) =>
            e.seq >= 25 && e.seq < 40 && events.some((n) => n.stream === e.stream && n.seq > e.seq && n.seq !== 40),
        )!;
        const next = events.find((e) => e.seq > victim.seq && e.stream === victim.stream)!;
        const bad = { ...victim, data: { nonsense: true } };
        await db.batch([
          { type: 'put', key: key(12), value: '{"not": json' },
          { type: 'put', key: key(victim.seq), value: JSON.stringify(bad) },
          { type: 'del', key: key(40) },
        ]);
        await db.close();
        const result = await runCli(['verify', '--db', dir]);
        assert.equal(result.code, 3, result.stdout + result.stderr);
        assert.match(result.stdout, /^\s*12\s+decode\s+corrupt event record at seq 12: not valid JSON/m);
        assert.match(
          result.stdout,
          new RegExp(
            `^\\s*${victim.seq}\\s+decode\\s+corrupt event record at seq ${victim.seq}: ${victim.type} v${victim.v} data`,
            'm',
          ),
        );
        assert.match(result.stdout, /^\s*40\s+seq\s+seq 40 is missing/m);
        // One record deleted (seq 40) of the whole history.
        assert.match(
          result.stdout,
          new RegExp(`^verified ${events.length - 1} records \\(seq 1\\.\\.${events.length}\\)`),
        );
        // Seq 12 was a stream's first event: its stream's next event is reported too.
        assert.match(result.stdout, /result: \d+ violations/);
        assert.doesNotMatch(
          result.stdout,
          new RegExp(`^\\s*${next.seq}\\s+version`, 'm'),
          'a bad payload with a good envelope does not cascade',
        );
      } finally {
        await tampered.cleanup();
      }
    });

    it('serve with a NATS setting the existing stream contradicts logs it as fatal and exits non-zero', async () => {
      const other = await tempRoot();
      try {
        await writeScenarioLog(join(other.dir, 'ledger'), { pods: 1 });
        const result = await runCli(
          [
            'serve',
            '--root',
            other.dir,
            '--socket',
            join(other.dir, 's.sock'),
            '--node',
            'test-node',
            '--log-level',
            'warn',
            '--nats-url',
            nats.url,
            '--nats-duplicate-window',
            '1m',
          ],
          { timeoutMs: 15_000 },
        );
        assert.notEqual(result.code, 0);
        const fatal = lines(result.stderr)
          .map((l) => JSON.parse(l) as { level: number; err?: { message: string } })
          .find((l) => l.level === 60);
        assert.match(fatal?.err?.message ?? '', /duplicate_window is 10m, config wants 1m/);
      } finally {
        await other.cleanup();
      }
    });
  });
});
