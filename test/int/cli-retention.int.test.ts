import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import { LogRetention } from '../../src/adapters/eventlog/log-retention.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { createLogger } from '../../src/adapters/logging/logger.js';
import { liveIn } from '../../src/cli/retention.js';
import { Ledger } from '../../src/commands/ledger.js';
import type { NewEvent } from '../../src/domain/events.js';
import { runCli, startServe, tempRoot, type CliResult } from '../support/cli.js';
import { startNatsServer } from '../support/nats-server.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';

/*
 * What an operator sees once retention removed part of the log: `timeline`, `explain`
 * and `events` say the local log no longer holds it and point at --nats, through a
 * stopped log (--db) and the running service's socket; `verify` calls the holes what
 * they are; and `serve --retention-max-age` prunes on its own.
 */

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-28T10:00:00.000Z');
const pod = sandbox('pod1');
const gone = container('gone', 'pod1');
const cut = container('cut', 'pod1');
const live = container('live', 'pod1');

const lifecycle = (c: typeof gone): NewEvent[] => [
  ev.nameReserved(c),
  ev.specGenerated(),
  ev.containerCreated(),
  ev.containerStarted(),
  ev.containerExited(),
  ev.containerRemoved(c),
];

/** Writes the history into `dir`; with `prune`, runs retention over it: `gone` whole, `cut` cut after 4 events. */
async function writeLog(dir: string, prune: boolean): Promise<void> {
  let clock = T0;
  const log = await LevelDbEventLog.open({ dir, node: 'test-node', now: () => (clock += 10) });
  try {
    await log.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    await log.append(streams.container(gone), 0, lifecycle(gone));
    await log.append(streams.container(cut), 0, lifecycle(cut));
    await log.append(streams.container(live), 0, [ev.nameReserved(live), ev.containerCreated()]);
    if (!prune) return;
    const ledger = await Ledger.load(log);
    const retention = LogRetention.start({
      log,
      policy: { maxAgeMs: HOUR, maxBytes: 0, minEndedAgeMs: 60_000, batchEvents: 10 },
      relay: false,
      isLive: liveIn(ledger),
      logger: createLogger('silent'),
      intervalMs: HOUR,
      now: () => T0 + 2 * HOUR,
    });
    await retention.loaded();
    await retention.pass();
    await retention.stop();
  } finally {
    await log.close();
  }
}

function failed(result: CliResult): string {
  assert.equal(result.code, 1, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stderr;
}

function ok(result: CliResult): CliResult {
  assert.equal(result.code, 0, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}

/** The assertions both sources must pass. */
function describeSource(name: string, cli: () => (args: string[]) => Promise<CliResult>): void {
  describe(`after retention, via ${name}`, { concurrency: false }, () => {
    it('timeline of a removed container names what was removed, when, and --nats', async () => {
      const stderr = failed(await cli()(['timeline', gone.id]));
      assert.match(stderr, new RegExp(`container ${gone.id} \\(${gone.name}\\) ended`));
      assert.match(stderr, /retention removed its 6 events \(seq 3\.\.8, recorded .*\) at 2026-11-28T12:00:00\.000Z/);
      assert.match(stderr, /add --nats/);
    });

    it("explain by name finds the removed container in retention's record and says where to look", async () => {
      const stderr = failed(await cli()(['explain', gone.name]));
      assert.match(
        stderr,
        new RegExp(`container ${gone.id} \\(${gone.name}\\) ended and the local log no longer holds it`),
      );
      assert.match(stderr, /retention removed its 6 events/);
      assert.match(stderr, /--nats/);
    });

    it('explain of a name nobody removed says the log was pruned and where else to look', async () => {
      const stderr = failed(await cli()(['explain', 'never_pod1_default_uid-pod1_0']));
      assert.match(stderr, /not found in the local log, which retention has pruned: 10 events of 2 ended/);
    });

    it('timeline by the name of a stream cut short shows the rest', async () => {
      const result = ok(await cli()(['timeline', cut.name]));
      assert.match(result.stdout, new RegExp(`container ${cut.id}`));
      assert.match(result.stdout, /ContainerRemoved/);
    });

    it('timeline of a stream cut short says the beginning is missing, then prints the rest', async () => {
      const result = ok(await cli()(['timeline', cut.id]));
      assert.match(
        result.stderr,
        /no longer holds the beginning of container [0-9a-f]{12}: retention removed its first 4/,
      );
      assert.match(result.stdout, /ContainerExited/);
      assert.doesNotMatch(result.stdout, /NameReserved/);
    });

    it('explain of a stream cut short says its beginning went and timeline shows the rest', async () => {
      const stderr = failed(await cli()(['explain', cut.id]));
      assert.match(stderr, /no longer holds the beginning of container [0-9a-f]{64} \(cut_/);
      assert.match(stderr, /timeline [0-9a-f]{64}` shows the rest/);
    });

    it('events says how many events of the range are gone', async () => {
      const result = ok(await cli()(['events']));
      assert.match(result.stderr, /no longer holds 10 events between seq 3 and 12: retention removed/);
      assert.match(result.stdout, /NameReserved/);
    });

    it('status says what retention removed', async () => {
      const result = ok(await cli()(['status']));
      assert.match(result.stdout, /retention\s+.*10 events of 2 ended streams removed/);
    });

    it('events --from past the holes says nothing', async () => {
      const result = ok(await cli()(['events', '--from', '13']));
      assert.equal(result.stderr, '');
    });
  });
}

describe('cli after retention', { concurrency: false }, () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let dir: string;
  before(async () => {
    root = await tempRoot();
    dir = join(root.dir, 'ledger');
    await writeLog(dir, true);
  });
  after(() => root.cleanup());

  describeSource('--db', () => (args) => runCli([...args, '--db', dir]));

  it('verify --db reports the holes as retention, not as defects', async () => {
    const result = ok(await runCli(['verify', '--db', dir]));
    assert.match(result.stdout, /gaps are events retention removed and recorded/);
    assert.match(result.stdout, /result: ok/);
  });

  describe('through the socket', { concurrency: false }, () => {
    let serve: Awaited<ReturnType<typeof startServe>>;
    const socket = () => join(root.dir, 'cri.sock');
    before(async () => {
      serve = await startServe({ root: root.dir, socket: socket() });
    });
    after(() => serve.stop());
    describeSource('the socket', () => (args) => runCli([...args, '--socket', socket()]));

    it('Follow from seq 1 steps over the holes, then goes live', async () => {
      const client = LedgerClient.connect(socket());
      const stop = new AbortController();
      const seqs: number[] = [];
      try {
        for await (const record of client.follow({ fromSeq: 1 }, stop.signal)) {
          seqs.push(record.seq);
          if (record.seq === 16) stop.abort();
        }
      } finally {
        client.close();
      }
      // 3..12 were removed: the pod's two events, what is left of `cut`, and `live`.
      assert.deepEqual(seqs, [1, 2, 13, 14, 15, 16]);
    });
  });
});

describe('serve with retention.maxAge', () => {
  it('prunes old removed containers in the background, and status readers see it', async () => {
    const root = await tempRoot();
    try {
      await writeLog(join(root.dir, 'ledger'), false);
      const socket = join(root.dir, 'cri.sock');
      const serve = await startServe({
        root: root.dir,
        socket,
        args: ['--retention-max-age', '1h', '--retention-interval', '100ms'],
      });
      try {
        let stderr = '';
        for (let i = 0; i < 100 && !/retention removed its 6 events/.test(stderr); i++) {
          stderr = (await runCli(['timeline', gone.id, '--socket', socket])).stderr;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(stderr, /retention removed its 6 events/);
        const result = ok(await runCli(['timeline', live.id, '--socket', socket]));
        assert.match(result.stdout, /ContainerCreated/);
      } finally {
        await serve.stop();
      }
    } finally {
      await root.cleanup();
    }
  });
});

describe('serve with retention and a NATS relay', () => {
  it('removes locally only what JetStream holds, and --nats still tells the whole story', async () => {
    const [root, nats] = await Promise.all([tempRoot(), startNatsServer()]);
    try {
      await writeLog(join(root.dir, 'ledger'), false);
      const socket = join(root.dir, 'cri.sock');
      const serve = await startServe({
        root: root.dir,
        socket,
        args: ['--nats-url', nats.url, '--retention-max-age', '1h', '--retention-interval', '100ms'],
      });
      try {
        let stderr = '';
        for (let i = 0; i < 100 && !/retention removed its 6 events/.test(stderr); i++) {
          stderr = (await runCli(['timeline', gone.id, '--socket', socket])).stderr;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(stderr, /retention removed its 6 events/);
        const local = ok(await runCli(['events', '--json', '--socket', socket]))
          .stdout.trim()
          .split('\n');
        const onNats = ok(await runCli(['events', '--json', '--nats', nats.url, '--node', 'test-node']));
        const all = onNats.stdout.trim().split('\n');
        assert.equal(all.length, 16, 'JetStream holds every event, removed ones too');
        assert.equal(local.length, 16 - 12, 'gone and cut (6 events each) are removed locally');
        const timeline = ok(await runCli(['timeline', gone.id, '--nats', nats.url, '--node', 'test-node']));
        assert.match(timeline.stdout, /NameReserved[\s\S]*ContainerRemoved/);
        assert.match(timeline.stdout, /over 6 events/);
      } finally {
        await serve.stop();
      }
    } finally {
      await Promise.all([root.cleanup(), nats.stop()]);
    }
  });
});
