import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import type { NewEvent } from '../src/domain/events.js';
import { container, ev, sandbox, streams } from '../test/support/fixtures.js';
import { generateScenario, type ScenarioAppend } from '../test/support/scenario.js';

/*
 * The restart benchmark's log: a long churn of pods that came and went, the live pods,
 * then exec probes on the live containers until the log holds exactly `events` events.
 * Generated a block of pods at a time and written in large group-committed windows, so
 * 10 million events take minutes, not hours, in bounded memory; kept in a cache
 * directory keyed by its parameters, so the next run starts at once.
 */

/** Bump when what the fixture holds changes: older cached fixtures are then ignored. */
export const FIXTURE_VERSION = 2;
export const NODE = 'bench';
/** Pods per generated churn block (~23 events each): small, so the probes that fill up stay few. */
const CHURN_BLOCK_PODS = 200;
/** Events queued before waiting for them: the log writes each window as a few large synced batches. */
const WINDOW_EVENTS = 20_000;

export interface FixtureOptions {
  events: number;
  live: number;
  perPod: number;
  /** The fixtures' few-byte specs instead of full-size ones. */
  fixtureSpecs: boolean;
}

export interface FixtureInfo {
  events: number;
  live: number;
  churnPods: number;
  probes: number;
  writeSeconds: number;
}

/** An OCI spec of the size and shape a real container's has (~4 KB): what SpecGenerated carries. */
function realisticSpec(i: number): Record<string, unknown> {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      user: { uid: 0, gid: 0, additionalGids: [0, 1, 2, 3, 4, 6, 10, 11, 20, 26, 27] },
      args: ['/bin/sh', '-c', `while true; do echo tick ${i}; sleep 5; done`],
      env: [
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOSTNAME=app',
        `POD_INDEX=${i}`,
        'KUBERNETES_SERVICE_HOST=10.96.0.1',
        'KUBERNETES_SERVICE_PORT=443',
        'KUBERNETES_PORT=tcp://10.96.0.1:443',
      ],
      cwd: '/',
      capabilities: Object.fromEntries(
        ['bounding', 'effective', 'permitted'].map((k) => [
          k,
          [
            'CAP_CHOWN',
            'CAP_DAC_OVERRIDE',
            'CAP_FSETID',
            'CAP_FOWNER',
            'CAP_MKNOD',
            'CAP_NET_RAW',
            'CAP_SETGID',
            'CAP_SETUID',
            'CAP_SETFCAP',
            'CAP_SETPCAP',
            'CAP_NET_BIND_SERVICE',
            'CAP_SYS_CHROOT',
            'CAP_KILL',
            'CAP_AUDIT_WRITE',
          ],
        ]),
      ),
      oomScoreAdj: 1000,
    },
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
      {
        destination: '/etc/hosts',
        type: 'bind',
        source: `/var/lib/cri-ledger/sandboxes/${i}/hosts`,
        options: ['rbind', 'rprivate', 'rw'],
      },
      {
        destination: '/etc/resolv.conf',
        type: 'bind',
        source: `/var/lib/cri-ledger/sandboxes/${i}/resolv.conf`,
        options: ['rbind', 'rprivate', 'rw'],
      },
      {
        destination: '/dev/shm',
        type: 'bind',
        source: `/run/cri-ledger/sandboxes/${i}/shm`,
        options: ['rbind', 'rprivate', 'rw'],
      },
      {
        destination: '/dev/termination-log',
        type: 'bind',
        source: `/var/lib/kubelet/pods/uid-${i}/containers/app/termination-log`,
        options: ['rbind', 'rprivate', 'rw'],
      },
    ],
    linux: {
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: 268435456 },
        cpu: { shares: 256, quota: 50000, period: 100000 },
      },
      cgroupsPath: `/kubepods/burstable/poduid-${i}/${i}`,
      namespaces: [
        { type: 'pid' },
        { type: 'ipc', path: `/proc/${1000 + i}/ns/ipc` },
        { type: 'uts', path: `/proc/${1000 + i}/ns/uts` },
        { type: 'mount' },
        { type: 'network', path: `/var/run/netns/cni-${i}` },
      ],
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
    annotations: {
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.sandbox-id': String(i),
      'io.kubernetes.cri.container-name': 'app',
    },
  };
}

/** Gives every SpecGenerated a full-size spec instead of the fixtures' few bytes. */
function withRealSpecs(append: ScenarioAppend, i: number): ScenarioAppend {
  return {
    ...append,
    events: append.events.map((e) =>
      e.type === 'SpecGenerated' ? { ...e, data: { ...e.data, spec: realisticSpec(i) } } : e,
    ),
  };
}

/** The appends for `pods` pods of `perPod` containers that are created, started and still running. */
function liveHistory(pods: number, perPod: number): ScenarioAppend[] {
  const out: ScenarioAppend[] = [];
  for (let p = 0; p < pods; p++) {
    const pod = sandbox(`live-pod-${p}`, `live${p}_ns_uid-live-${p}_0`);
    out.push({ stream: streams.sandbox(pod), expected: 0, events: [ev.sandboxReserved(pod, `req-live-pod-${p}`)] });
    out.push({ stream: streams.sandbox(pod), expected: 1, events: [ev.sandboxReady()] });
    for (let k = 0; k < perPod; k++) {
      const c = { ...container(`live-c-${p}-${k}`, `live-pod-${p}`, `app${k}_${pod.name}`), sandboxId: pod.id };
      const corr = `req-live-${p}-${k}`;
      const s = streams.container(c);
      out.push({ stream: s, expected: 0, events: [ev.nameReserved(c, corr), ev.specGenerated(corr)] });
      out.push({ stream: s, expected: 2, events: [ev.snapshotPrepared(c, corr), ev.containerCreated(1, corr)] });
      out.push({ stream: s, expected: 4, events: [ev.containerStarted()] });
    }
  }
  return out;
}

const execRan = (n: number): NewEvent<'ExecRan'> => ({
  type: 'ExecRan',
  correlationId: `req-exec-${n}`,
  data: {
    execId: `exec-${n}`,
    cmd: ['sh', '-c', 'cat /tmp/healthy'],
    exitCode: 0,
    timedOut: false,
    durationMs: 12.5,
    stdoutBytes: 3,
    stderrBytes: 0,
    truncated: false,
  },
});

/** Every append of the fixture, in order, generated as it is consumed. */
function* fixtureAppends(o: FixtureOptions, info: { churnPods: number; probes: number }): Generator<ScenarioAppend> {
  const live = liveHistory(Math.ceil(o.live / o.perPod), o.perPod);
  const liveEvents = live.reduce((n, a) => n + a.events.length, 0);
  const spec = (a: ScenarioAppend, i: number): ScenarioAppend => (o.fixtureSpecs ? a : withRealSpecs(a, i));
  let churnEvents = 0;
  for (let block = 0; ; block++) {
    const appends = generateScenario({
      pods: CHURN_BLOCK_PODS,
      seed: 11 + block,
      teardownRate: 1,
      firstPod: block * CHURN_BLOCK_PODS,
      leaveInFlight: false,
    });
    const n = appends.reduce((sum, a) => sum + a.events.length, 0);
    if (churnEvents + n + liveEvents > o.events) break;
    churnEvents += n;
    info.churnPods += CHURN_BLOCK_PODS;
    for (const [i, a] of appends.entries()) yield spec(a, i);
  }
  if (liveEvents > o.events) throw new Error(`${o.live} live containers alone are ${liveEvents} events`);
  for (const [i, a] of live.entries()) yield spec(a, i);
  const liveContainers = live.filter((a) => a.stream.startsWith('container-') && a.expected === 4).map((a) => a.stream);
  info.probes = o.events - liveEvents - churnEvents;
  for (let i = 0; i < info.probes; i++) {
    const stream = liveContainers[i % liveContainers.length]!;
    yield { stream, expected: 5 + Math.floor(i / liveContainers.length), events: [execRan(i)] };
  }
}

/** Writes the fixture into the ledger directory `dir`, which must be new. */
async function writeFixture(
  dir: string,
  o: FixtureOptions,
  onProgress: (events: number) => void,
): Promise<FixtureInfo> {
  const started = performance.now();
  let clock = Date.parse('2026-11-01T00:00:00.000Z');
  // One step per batch: times grow along the log as they would.
  const log = await LevelDbEventLog.open({ dir, node: NODE, now: () => (clock += 25) });
  const info = { churnPods: 0, probes: 0 };
  try {
    let window: Promise<unknown>[] = [];
    let queued = 0;
    for (const append of fixtureAppends(o, info)) {
      // Not awaited one by one: the whole window is group-committed together, and the
      // appends of one stream stay in order (the log checks them in queue order).
      window.push(log.append(append.stream, append.expected, append.events));
      queued += append.events.length;
      if (queued >= WINDOW_EVENTS) {
        await Promise.all(window);
        window = [];
        queued = 0;
        onProgress(log.head());
      }
    }
    await Promise.all(window);
    if (log.head() !== o.events) throw new Error(`wrote ${log.head()} events, wanted ${o.events}`);
  } finally {
    await log.close();
  }
  return { events: o.events, live: o.live, ...info, writeSeconds: (performance.now() - started) / 1000 };
}

/**
 * A service root whose `ledger` holds the fixture: taken from `cacheDir` when a complete
 * one for these options is there (its snapshots removed, so each run starts without
 * one), else written (into the cache when given). Returns the root and what it holds.
 */
export async function fixtureRoot(
  o: FixtureOptions,
  where: { cacheDir?: string; tempDir: string },
  onProgress: (events: number) => void,
): Promise<{ root: string; info: FixtureInfo; cached: boolean }> {
  const key = `restart-v${FIXTURE_VERSION}-e${o.events}-c${o.live}-p${o.perPod}-${o.fixtureSpecs ? 'fixture' : 'full'}-specs`;
  const root = where.cacheDir ? join(where.cacheDir, key) : join(where.tempDir, key);
  const marker = join(root, 'fixture.json');
  if (where.cacheDir && existsSync(marker)) {
    await rm(join(root, 'ledger', 'snapshots'), { recursive: true, force: true });
    return { root, info: JSON.parse(await readFile(marker, 'utf8')) as FixtureInfo, cached: true };
  }
  // Written beside, then renamed: an interrupted write never passes for a complete fixture.
  const partial = `${root}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const info = await writeFixture(join(partial, 'ledger'), o, onProgress);
  await writeFile(join(partial, 'fixture.json'), JSON.stringify(info));
  await rm(root, { recursive: true, force: true });
  await rename(partial, root);
  return { root, info, cached: false };
}
