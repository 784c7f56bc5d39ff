import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import { LogRetention } from '../src/adapters/eventlog/log-retention.js';
import { createLogger } from '../src/adapters/logging/logger.js';
import { liveIn } from '../src/cli/retention.js';
import { Ledger } from '../src/commands/ledger.js';
import { DEFAULT_RETENTION_BATCH_EVENTS } from '../src/commands/retention-policy.js';
import type { NewEvent } from '../src/domain/events.js';
import { container, ev, sandbox, streams } from '../test/support/fixtures.js';
import { percentile, report, type Row } from './table.js';

/*
 * `npm run bench -- retention`: the log's disk use under container churn, without and
 * with retention. A node keeps `--live` containers running; each step removes the oldest
 * (stop, exit, remove) and creates one in its place (reserve, spec, snapshot, create,
 * start), from `--writers` concurrent appenders, written through the LevelDB adapter as
 * the service would. The first run keeps everything; the second runs the size rule
 * (`--max-mib`), a pass every `--pass-every` lifecycles as the service's timer would,
 * and samples the directory's size every 50 lifecycles, the passes' duration, and append
 * latency while passes run. SpecGenerated carries a realistic ~4 KB spec.
 *
 * The minimum time after a stream's end (1 minute in the service) is 0 here: the
 * simulated churn has no wall time to wait through.
 */

const NODE = 'bench';

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

interface Churn {
  lifecycles: number;
  live: number;
  writers: number;
}

interface RunResult {
  events: number;
  bytes: number;
  compactedBytes: number;
  appendMs: number[];
  sizes: number[];
  /** Events the log held at each size sample. */
  held: number[];
  passMs: number[];
  pruned: number;
  retained: number;
  streams: number;
  ranges: number;
}

/** An OCI spec of a real container's size and shape (~4 KB), as SpecGenerated carries it. */
function realisticSpec(i: number): Record<string, unknown> {
  const caps = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP']
    .concat(['SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'])
    .map((c) => `CAP_${c}`);
  const bind = (destination: string, source: string) => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'rprivate', 'rw'],
  });
  return {
    ociVersion: '1.0.2-dev',
    process: {
      user: { uid: 0, gid: 0, additionalGids: [0, 1, 2, 3, 4, 6, 10, 11, 20, 26, 27] },
      args: ['/bin/sh', '-c', `while true; do echo tick ${i}; sleep 5; done`],
      env: [
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        `HOSTNAME=app-${i}`,
        'KUBERNETES_SERVICE_HOST=10.96.0.1',
        'KUBERNETES_SERVICE_PORT=443',
        'KUBERNETES_PORT=tcp://10.96.0.1:443',
      ],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      oomScoreAdj: 1000,
    },
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      bind('/etc/hosts', `/var/lib/cri-ledger/sandboxes/${i}/hosts`),
      bind('/etc/resolv.conf', `/var/lib/cri-ledger/sandboxes/${i}/resolv.conf`),
      bind('/dev/shm', `/run/cri-ledger/sandboxes/${i}/shm`),
      bind('/dev/termination-log', `/var/lib/kubelet/pods/uid-${i}/containers/app/termination-log`),
    ],
    linux: {
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: 268435456 },
        cpu: { shares: 256, quota: 50000, period: 100000 },
      },
      cgroupsPath: `/kubepods/burstable/poduid-${i}/${i}`,
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
    annotations: {
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.sandbox-id': `sandbox-${i}`,
      'io.kubernetes.cri.image-name': 'docker.io/library/busybox:latest',
    },
  };
}

const created = (c: ReturnType<typeof container>, i: number): NewEvent[] => [
  ev.nameReserved(c),
  { ...ev.specGenerated(), data: { ...ev.specGenerated().data, spec: realisticSpec(i) } },
  ev.snapshotPrepared(c),
  ev.containerCreated(),
  ev.containerStarted(),
];
const ended = (c: ReturnType<typeof container>): NewEvent[] => [
  ev.containerStopped(),
  ev.containerExited(),
  ev.containerRemoved(c),
];

async function churn(o: Churn & { maxBytes: number; passEvery: number }): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-retention-'));
  const log = await LevelDbEventLog.open({ dir, node: NODE });
  try {
    const pod = sandbox('bench-pod');
    await log.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    const ledger = await Ledger.load(log);
    const retention =
      o.maxBytes > 0
        ? LogRetention.start({
            log,
            policy: {
              maxAgeMs: 0,
              maxBytes: o.maxBytes,
              minEndedAgeMs: 0,
              batchEvents: DEFAULT_RETENTION_BATCH_EVENTS,
            },
            relay: false,
            isLive: liveIn(ledger),
            logger: createLogger(process.env.BENCH_LOG_LEVEL ?? 'silent'),
            // Passes are driven below, every `passEvery` lifecycles.
            intervalMs: 24 * 3_600_000,
          })
        : undefined;
    await retention?.loaded();
    const live: Array<ReturnType<typeof container>> = [];
    let next = 0;
    const start = async (): Promise<void> => {
      const c = container(`c${next}`, 'bench-pod');
      const i = next++;
      await log.append(streams.container(c), 0, created(c, i));
      live.push(c);
    };
    for (let i = 0; i < o.live; i++) await start();
    const appendMs: number[] = [];
    const sizes: number[] = [];
    const held: number[] = [];
    const passMs: number[] = [];
    let done = 0;
    let passing: Promise<void> | undefined;
    const step = async (): Promise<void> => {
      const c = live.shift()!;
      const t0 = performance.now();
      await log.append(streams.container(c), 5, ended(c));
      appendMs.push(performance.now() - t0);
      const t1 = performance.now();
      await start();
      appendMs.push(performance.now() - t1);
      const n = ++done;
      // The directory's size every 50 lifecycles, whatever retention is doing.
      if (n % 50 === 0) {
        sizes.push(await log.diskBytes());
        held.push(log.head() - (log.prunedSummary()?.events ?? 0));
      }
      if (retention && n % o.passEvery === 0 && !passing) {
        // In the background, as the service's timer runs it: appends go on meanwhile.
        passing = (async () => {
          for (;;) {
            const p0 = performance.now();
            const full = await retention.pass();
            passMs.push(performance.now() - p0);
            if (!full) break;
          }
        })().finally(() => (passing = undefined));
      }
    };
    let claimed = 0;
    const writer = async (): Promise<void> => {
      while (claimed < o.lifecycles) {
        claimed++;
        await step();
      }
    };
    await Promise.all(Array.from({ length: o.writers }, writer));
    await passing;
    await retention?.stop();
    const events = log.head();
    const pruned = log.prunedSummary();
    const bytes = await log.diskBytes();
    await log.close();
    // The same directory once LevelDB compacted everything: the disk an event really costs.
    const raw = new Level<string, string>(dir);
    await raw.open();
    await (raw as unknown as { compactRange(a: string, b: string): Promise<void> }).compactRange('', '\xff');
    await raw.close();
    const reopened = await LevelDbEventLog.open({ dir, node: NODE });
    const compactedBytes = await reopened.diskBytes();
    await reopened.close();
    return {
      events,
      bytes,
      compactedBytes,
      appendMs,
      sizes,
      held,
      passMs,
      pruned: pruned?.events ?? 0,
      retained: events - (pruned?.events ?? 0),
      streams: pruned?.streams ?? 0,
      ranges: log.prunedWithin(1, events).ranges.length,
    };
  } finally {
    await log.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runRetentionBench(args: string[]): Promise<void> {
  const o: Churn = {
    lifecycles: flag(args, 'lifecycles', 5_000),
    live: flag(args, 'live', 50),
    writers: flag(args, 'writers', 8),
  };
  const maxBytes = flag(args, 'max-mib', 8) * 1024 * 1024;
  const passEvery = flag(args, 'pass-every', 250);
  console.log(
    `churn: ${o.lifecycles} container lifecycles (8 events each), ${o.live} live, ${o.writers} writers; ` +
      `retention: size rule ${maxBytes / 1024 / 1024} MiB, a pass every ${passEvery} lifecycles`,
  );
  const keep = await churn({ ...o, maxBytes: 0, passEvery });
  const prune = await churn({ ...o, maxBytes, passEvery });
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const keepMs = sorted(keep.appendMs);
  const pruneMs = sorted(prune.appendMs);
  const half = sorted(prune.sizes.slice(Math.floor(prune.sizes.length / 2)));
  const mib = (b: number) => b / 1024 / 1024;
  const rows: Row[] = [
    { metric: 'events written', value: keep.events, unit: 'events' },
    { metric: 'disk per event, everything kept, as written', value: keep.bytes / keep.events, unit: 'bytes' },
    { metric: 'disk per event, everything kept, compacted', value: keep.compactedBytes / keep.events, unit: 'bytes' },
    { metric: 'log size, everything kept', value: mib(keep.bytes), unit: 'MiB' },
    {
      metric: 'disk per retained event, retention on, compacted',
      value: prune.compactedBytes / prune.retained,
      unit: 'bytes',
    },
    { metric: 'log size at the end, retention on', value: mib(prune.bytes), unit: 'MiB', target: `~${mib(maxBytes)}` },
    {
      metric: 'log size, 2nd half of the churn, p50',
      value: mib(percentile(half, 50)),
      unit: 'MiB',
      target: `~${mib(maxBytes)}`,
    },
    { metric: 'log size, 2nd half of the churn, max', value: mib(half.at(-1) ?? 0), unit: 'MiB' },
    { metric: 'events pruned', value: prune.pruned, unit: 'events' },
    { metric: 'events retained locally', value: prune.retained, unit: 'events' },
    { metric: 'pruned seq ranges kept', value: prune.ranges, unit: 'ranges' },
    { metric: 'pruned streams (one tombstone each)', value: prune.streams, unit: 'streams' },
    { metric: 'pass (one batch of <= 1,000 events) p50', value: percentile(sorted(prune.passMs), 50), unit: 'ms' },
    { metric: 'pass p99', value: percentile(sorted(prune.passMs), 99), unit: 'ms' },
    { metric: 'append p50, everything kept', value: percentile(keepMs, 50), unit: 'ms' },
    { metric: 'append p99, everything kept', value: percentile(keepMs, 99), unit: 'ms' },
    { metric: 'append p50, retention passes running', value: percentile(pruneMs, 50), unit: 'ms' },
    { metric: 'append p99, retention passes running', value: percentile(pruneMs, 99), unit: 'ms' },
  ];
  report('retention', rows, {
    ...o,
    maxBytes,
    passEvery,
    // Every 50 lifecycles: with retention, then with everything kept.
    sizesMiB: prune.sizes.map((s) => Math.round(mib(s) * 10) / 10),
    heldEvents: prune.held,
    sizesKeptMiB: keep.sizes.map((s) => Math.round(mib(s) * 10) / 10),
  });
}
