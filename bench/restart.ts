import { existsSync } from 'node:fs';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../src/adapters/cri/cri-definition.js';
import { containerMessage, visibleContainers } from '../src/adapters/cri/cri-views.js';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import { FileSnapshotStore, snapshotDir } from '../src/adapters/snapshots/file-snapshot-store.js';
import { Ledger } from '../src/commands/ledger.js';
import {
  canonicalJson,
  captureProjections,
  diffProjections,
  encodeSnapshot,
} from '../src/projections/projection-snapshot.js';
import type { Projections } from '../src/projections/projections.js';
import { fixtureRoot, NODE } from './restart-fixture.js';
import { percentile, report, type Row } from './table.js';

/*
 * `npm run bench -- restart`: how long `cri-ledger serve` takes to serve again on a
 * node's log (1,000 live containers; 100,000 events by default, 10 million for the
 * issue 16 target), with and without snapshots of the projections. The log is written
 * directly through the LevelDB adapter (bench/restart-fixture.ts). The service is
 * pointed at a containerd socket that does not exist, which it tolerates: startup
 * recovery, reconciliation and the exit monitor wait for containerd, so nothing touches
 * the 1,000 containers and every run starts on the same log. Each run's ListContainers
 * is compared with an in-process full replay of the log.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI_MAIN = join(HERE, '..', 'src', 'cli', 'main.js');
/** A big log takes a while to replay in full: allow ~20,000 events/s on a loaded machine. */
const servingTimeoutMs = (events: number): number => Math.max(60_000, events / 20);
/** From this size on the fixture is cached unless --no-cache: writing it takes minutes. */
const CACHE_FROM_EVENTS = 1_000_000;

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

function stringFlag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

interface CriClient extends Client {
  version: (
    request: object,
    options: { deadline: number },
    callback: (error: ServiceError | null, response: object) => void,
  ) => void;
  listContainers: (
    request: object,
    options: { deadline: number },
    callback: (error: ServiceError | null, response: { containers: Array<Record<string, unknown>> }) => void,
  ) => void;
}

function criClient(socket: string): CriClient {
  const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
  // grpc-js waits ~1 s (±20 %) before it dials again after a failed connect: polling a
  // socket not yet bound then measured that backoff, not the service (every restart
  // read ~1,050 ms). Reconnect at once, so each poll is a real attempt.
  return new Constructor(`unix://${socket}`, credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 2,
    'grpc.max_reconnect_backoff_ms': 2,
  }) as unknown as CriClient;
}

/** The fields of a listed container that say which container it is and in what state. */
function containerKey(c: Record<string, unknown>): string {
  const metadata = c.metadata as { name: string; attempt: number };
  const image = c.image as { image: string };
  return canonicalJson({
    id: c.id,
    podSandboxId: c.podSandboxId,
    metadata: { name: metadata.name, attempt: metadata.attempt },
    image: image.image,
    imageRef: c.imageRef,
    state: c.state,
    createdAt: String(c.createdAt),
    labels: c.labels,
    annotations: c.annotations,
  });
}

/** What ListContainers must return: the CRI view of a full replay's containers. */
function expectedContainers(p: Projections): string[] {
  return visibleContainers(p.containers.values())
    .map((r) => containerKey(containerMessage(r) as unknown as Record<string, unknown>))
    .sort();
}

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU time (user + system) a process has used so far, from /proc/<pid>/stat. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which is in parentheses and may hold spaces).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

interface Service {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function spawnServe(root: string, runDir: string, snapshots: boolean): Service {
  const child = spawn(
    process.execPath,
    [
      // e.g. "--cpu-prof --cpu-prof-dir=DIR", to see where a start goes (as startServe takes it).
      ...(process.env.CRI_LEDGER_SERVE_NODE_ARGS ?? '').split(' ').filter(Boolean),
      CLI_MAIN,
      'serve',
      '--root',
      root,
      '--state-dir',
      join(runDir, 'state'),
      '--socket',
      join(runDir, 'cri.sock'),
      '--node',
      NODE,
      '--log-level',
      'info',
      '--containerd-address',
      join(runDir, 'no-containerd.sock'),
      '--snapshots-enabled',
      String(snapshots),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

/** Calls Version until it answers (the socket is bound last, once the projections are loaded). */
async function untilVersion(socket: string, service: Service, timeoutMs: number): Promise<void> {
  const started = performance.now();
  const exited = (): boolean => service.child.exitCode !== null || service.child.signalCode !== null;
  // The socket file appears when the service binds it, last: wait for it with a stat
  // every 2 ms (dialling every 2 ms would take CPU from the start being measured).
  while (!existsSync(socket)) {
    if (exited()) throw new Error(`serve exited before serving:\n${service.stderr()}`);
    if (performance.now() - started > timeoutMs) throw new Error(`serve did not serve in time:\n${service.stderr()}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  const client = criClient(socket);
  try {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) =>
        client.version({}, { deadline: Date.now() + 1_000 }, (e) => resolve(e === null)),
      );
      if (ok) return;
      if (exited()) throw new Error(`serve exited before serving:\n${service.stderr()}`);
      if (performance.now() - started > timeoutMs) throw new Error(`serve did not serve in time:\n${service.stderr()}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    client.close();
  }
}

async function listContainers(socket: string): Promise<string[]> {
  const client = criClient(socket);
  try {
    const response = await new Promise<{ containers: Array<Record<string, unknown>> }>((resolve, reject) =>
      client.listContainers({}, { deadline: Date.now() + 60_000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    return response.containers.map(containerKey).sort();
  } finally {
    client.close();
  }
}

async function stop(service: Service): Promise<number> {
  const started = performance.now();
  service.child.kill('SIGTERM');
  const timer = setTimeout(() => service.child.kill('SIGKILL'), 60_000);
  await service.exited;
  clearTimeout(timer);
  return performance.now() - started;
}

/** The `projections loaded` line the service logs: where its load started. */
function loadedFrom(service: Service): { snapshotSeq: number; replayed: number; ms: number } | undefined {
  for (const line of service.stderr().split('\n')) {
    if (!line.includes('"projections loaded"')) continue;
    return JSON.parse(line) as { snapshotSeq: number; replayed: number; ms: number };
  }
  return undefined;
}

function checkServed(served: string[], expected: string[], what: string): void {
  if (served.length !== expected.length)
    throw new Error(
      `${what}: ListContainers returned ${served.length} containers, a full replay has ${expected.length}`,
    );
  const differing = served.filter((s, i) => s !== expected[i]).length;
  if (differing > 0) throw new Error(`${what}: ${differing} containers differ from a full replay`);
}

export async function runRestartBench(args: string[]): Promise<void> {
  const events = flag(args, 'events', 100_000);
  const live = flag(args, 'containers', 1_000);
  const runs = flag(args, 'runs', 7);
  // The fixtures' few-byte specs instead of full-size ones: shows what the spec bytes cost.
  const fixtureSpecs = args.includes('--fixture-specs');
  const cache =
    !args.includes('--no-cache') &&
    (args.includes('--cache') || stringFlag(args, 'cache-dir') !== undefined || events >= CACHE_FROM_EVENTS);
  const cacheDir = cache ? (stringFlag(args, 'cache-dir') ?? join(tmpdir(), 'cri-ledger-bench-cache')) : undefined;
  const timeoutMs = servingTimeoutMs(events);
  const runDir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-restart-'));
  const socket = join(runDir, 'cri.sock');
  const services: Service[] = [];
  try {
    let lastReport = 0;
    const fixture = await fixtureRoot(
      { events, live, perPod: 4, fixtureSpecs },
      { ...(cacheDir ? { cacheDir } : {}), tempDir: runDir },
      (written) => {
        if (performance.now() - lastReport < 10_000) return;
        lastReport = performance.now();
        console.log(`writing the log: ${written} of ${events} events`);
      },
    );
    const ledgerDir = join(fixture.root, 'ledger');
    console.log(
      fixture.cached
        ? `the log (${events} events, ${live} live containers) from the cache: ${fixture.root}`
        : `wrote ${events} events (${fixture.info.churnPods} churned pods, ${live} live containers, ${fixture.info.probes} probes) in ${fixture.info.writeSeconds.toFixed(1)} s${cacheDir ? `, cached in ${fixture.root}` : ''}`,
    );

    // The reference: a full replay in this process.
    const replayStarted = performance.now();
    const log = await LevelDbEventLog.open({ dir: ledgerDir, node: NODE });
    const full = await Ledger.load(log);
    const replayMs = performance.now() - replayStarted;
    const head = log.head();
    await log.close();
    const expected = expectedContainers(full.projections);
    if (expected.length !== live) throw new Error(`the log holds ${expected.length} live containers, wanted ${live}`);
    console.log(`in-process full replay: ${head} events in ${(replayMs / 1000).toFixed(1)} s`);
    // What writing a snapshot of these projections costs a running service: the capture
    // (synchronous) and the longest hold of the event loop while it is encoded and written.
    const captureStarted = performance.now();
    const captured = captureProjections(full.projections);
    const captureMs = performance.now() - captureStarted;
    if (!captured) throw new Error('the replayed projections could not be captured');
    const written = await new FileSnapshotStore(join(runDir, 'snapshot-write')).write(
      captured.header.seq,
      encodeSnapshot(captured),
    );
    console.log(
      `a snapshot of the ${live} live containers: ${written.bytes} bytes, capture ${captureMs.toFixed(2)} ms, ` +
        `longest slice ${written.longestSliceMs.toFixed(2)} ms, total ${written.totalMs.toFixed(1)} ms`,
    );

    const loadBefore = loadavg()[0]!;
    // Without snapshots: the whole log is replayed (what every start did before them).
    const noSnapshots = spawnServe(fixture.root, runDir, false);
    services.push(noSnapshots);
    const replayServeStarted = performance.now();
    await untilVersion(socket, noSnapshots, timeoutMs);
    const fullReplayToVersionMs = performance.now() - replayServeStarted;
    checkServed(await listContainers(socket), expected, 'without snapshots');
    await stop(noSnapshots);
    console.log(`without snapshots: start to Version ${fullReplayToVersionMs.toFixed(0)} ms`);

    // With snapshots: the first start replays the log and writes one (at once when the
    // log is past snapshots.everyEvents, else at its shutdown); every later one loads it.
    let current = spawnServe(fixture.root, runDir, true);
    services.push(current);
    const firstStarted = performance.now();
    await untilVersion(socket, current, timeoutMs);
    const firstToVersionMs = performance.now() - firstStarted;
    checkServed(await listContainers(socket), expected, 'first start with snapshots');

    const sigtermToVersion: number[] = [];
    const spawnToVersion: number[] = [];
    const spawnToList: number[] = [];
    const shutdown: number[] = [];
    const cpu: number[] = [];
    const replayed: number[] = [];
    for (let i = 0; i < runs; i++) {
      const sigterm = performance.now();
      shutdown.push(await stop(current));
      const spawned = performance.now();
      current = spawnServe(fixture.root, runDir, true);
      services.push(current);
      await untilVersion(socket, current, timeoutMs);
      const versionAt = performance.now();
      const served = await listContainers(socket);
      const listAt = performance.now();
      cpu.push(await cpuMs(current.child.pid!));
      checkServed(served, expected, `restart ${i + 1}`);
      const from = loadedFrom(current);
      if (!from || from.snapshotSeq === 0)
        throw new Error(`restart ${i + 1} did not load a snapshot:\n${current.stderr()}`);
      replayed.push(from.replayed);
      sigtermToVersion.push(versionAt - sigterm);
      spawnToVersion.push(versionAt - spawned);
      spawnToList.push(listAt - spawned);
      console.log(
        `restart ${i + 1}: SIGTERM to Version ${(versionAt - sigterm).toFixed(0)} ms (shutdown ${shutdown.at(-1)!.toFixed(0)} ms, ` +
          `start to Version ${(versionAt - spawned).toFixed(0)} ms, to ListContainers ${(listAt - spawned).toFixed(0)} ms), ` +
          `snapshot at seq ${from.snapshotSeq}, ${from.replayed} events replayed, serve's CPU ${cpu.at(-1)!.toFixed(0)} ms`,
      );
    }
    await stop(current);

    // The snapshot left on disk, loaded in process, against the full replay, document by document.
    const check = await LevelDbEventLog.open({ dir: ledgerDir, node: NODE });
    const fromSnapshot = await Ledger.load(check, undefined, {
      snapshots: new FileSnapshotStore(snapshotDir(ledgerDir)),
    });
    const differences = diffProjections(fromSnapshot.projections, full.projections);
    const headAfter = check.head();
    await check.close();
    if (headAfter !== head) throw new Error(`the restarts changed the log: ${headAfter} events, wanted ${head}`);
    if (!fromSnapshot.loadedFrom.snapshot) throw new Error('no snapshot was left to load');
    if (differences.length > 0)
      throw new Error(`the snapshot differs from a full replay: ${JSON.stringify(differences.slice(0, 5))}`);

    const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
    const rows: Row[] = [
      {
        metric: 'restart_sigterm_to_version_p50_ms',
        value: percentile(sorted(sigtermToVersion), 50),
        unit: 'ms',
        target: '< 1,000 ms',
      },
      { metric: 'restart_sigterm_to_version_max_ms', value: Math.max(...sigtermToVersion), unit: 'ms' },
      { metric: 'restart_to_version_p50_ms', value: percentile(sorted(spawnToVersion), 50), unit: 'ms' },
      { metric: 'restart_to_serving_p50_ms', value: percentile(sorted(spawnToList), 50), unit: 'ms' },
      { metric: 'restart_shutdown_p50_ms', value: percentile(sorted(shutdown), 50), unit: 'ms' },
      { metric: 'restart_cpu_p50_ms', value: percentile(sorted(cpu), 50), unit: 'ms' },
      { metric: 'restart_replayed_events_max', value: Math.max(...replayed), unit: 'events' },
      { metric: 'first_start_with_snapshots_to_version_ms', value: firstToVersionMs, unit: 'ms' },
      { metric: 'full_replay_to_version_ms', value: fullReplayToVersionMs, unit: 'ms' },
      { metric: 'inprocess_full_replay_ms', value: replayMs, unit: 'ms' },
      { metric: 'snapshot_capture_ms', value: captureMs, unit: 'ms' },
      { metric: 'snapshot_longest_slice_ms', value: written.longestSliceMs, unit: 'ms' },
      { metric: 'snapshot_write_total_ms', value: written.totalMs, unit: 'ms' },
      { metric: 'snapshot_bytes', value: written.bytes, unit: 'bytes' },
      { metric: 'snapshot_state_differences', value: differences.length, unit: 'documents', target: '0' },
      { metric: 'log_events', value: head, unit: 'events' },
      { metric: 'log_live_containers', value: expected.length, unit: 'containers' },
    ];
    const round2 = (n: number): number => Math.round(n * 100) / 100;
    report(fixtureSpecs ? 'restart-fixture-specs' : 'restart', rows, {
      runs,
      spec: fixtureSpecs ? 'fixture (~200 bytes)' : 'full-size (~4 KB)',
      fixture_cached: fixture.cached,
      load_avg_1m_before: round2(loadBefore),
      load_avg_1m_after: round2(loadavg()[0]!),
      cores: availableParallelism(),
    });
  } finally {
    for (const s of services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await rm(runDir, { recursive: true, force: true });
  }
}
