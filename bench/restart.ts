import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../src/adapters/cri/cri-definition.js';
import { LevelDbEventLog } from '../src/adapters/eventlog/leveldb-event-log.js';
import type { LedgerEvent, NewEvent } from '../src/domain/events.js';
import { Projections } from '../src/projections/projections.js';
import { accepts } from '../test/support/cli.js';
import { container, ev, sandbox, streams } from '../test/support/fixtures.js';
import { generateScenario, type ScenarioAppend } from '../test/support/scenario.js';
import { percentile, report, type Row } from './table.js';

/*
 * `npm run bench -- restart`: the time from starting `cri-ledger serve` on a node's log
 * (1,000 live containers in 100,000 events) to its socket answering ListContainers with
 * all 1,000. The log is written directly through the LevelDB adapter; the service is
 * pointed at a containerd socket that does not exist, which it tolerates: startup
 * recovery, reconciliation and the exit monitor wait for containerd, so nothing
 * touches the 1,000 containers and every run starts on the same log.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI_MAIN = join(HERE, '..', 'src', 'cli', 'main.js');
const NODE = 'bench';
const SERVING_TIMEOUT_MS = 60_000;
/** Concurrent appenders while the log is written. */
const WRITERS = 64;

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
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

/**
 * Writes the node's log: a long churn of pods that came and went (the shared scenario
 * generator, every pod torn down), then the live pods, then exec probes on the live
 * containers until the log holds exactly `events` events.
 */
async function buildLog(
  dir: string,
  o: { events: number; live: number; perPod: number; fixtureSpecs?: boolean },
): Promise<{ live: number; inFlight: number; bytes: number }> {
  const live = liveHistory(Math.ceil(o.live / o.perPod), o.perPod);
  const liveEvents = live.reduce((n, a) => n + a.events.length, 0);
  // About 23 events per churned pod; stay under the budget and fill up with probes.
  const churn = generateScenario({ pods: Math.floor((o.events - liveEvents) / 26), seed: 11, teardownRate: 1 });
  const churnEvents = churn.reduce((n, a) => n + a.events.length, 0);
  const probes = o.events - liveEvents - churnEvents;
  if (probes < 0) throw new Error(`the churn alone is ${churnEvents} events; lower the pod count`);
  let clock = Date.parse('2026-11-01T00:00:00.000Z');
  const log = await LevelDbEventLog.open({ dir, node: NODE, now: () => (clock += 25) });
  let bytes = 0;
  const projections = new Projections();
  try {
    const appends = o.fixtureSpecs ? [...churn, ...live] : [...churn, ...live].map(withRealSpecs);
    const liveContainers = live
      .filter((a) => a.stream.startsWith('container-') && a.expected === 4)
      .map((a) => a.stream);
    for (let i = 0; i < probes; i++) {
      const stream = liveContainers[i % liveContainers.length]!;
      appends.push({ stream, expected: 5 + Math.floor(i / liveContainers.length), events: [execRan(i)] });
    }
    // Each stream's appends in order; many streams at once, so group commit shares the
    // fsyncs (one append at a time would take minutes on a busy machine).
    const byStream = new Map<string, ScenarioAppend[]>();
    for (const a of appends) byStream.set(a.stream, [...(byStream.get(a.stream) ?? []), a]);
    const queue = [...byStream.values()];
    const written: LedgerEvent[] = [];
    const worker = async (): Promise<void> => {
      for (let lane = queue.shift(); lane; lane = queue.shift()) {
        for (const a of lane) written.push(...(await log.append(a.stream, a.expected, a.events)));
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, worker));
    written.sort((a, b) => a.seq - b.seq);
    for (const e of written) {
      bytes += JSON.stringify(e).length;
      projections.apply(e);
    }
    if (log.head() !== o.events) throw new Error(`wrote ${log.head()} events, wanted ${o.events}`);
  } finally {
    await log.close();
  }
  const visible = [...projections.containers.values()].filter((c) => c.state !== 'CREATING').length;
  if (visible !== o.live) throw new Error(`the log holds ${visible} live containers, wanted ${o.live}`);
  return { live: visible, inFlight: projections.operations.size, bytes };
}

type ListCall = (
  request: object,
  options: { deadline: number },
  callback: (error: ServiceError | null, response: { containers: unknown[] }) => void,
) => void;

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU time (user + system) a process has used so far, from /proc/<pid>/stat. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which is in parentheses and may hold spaces).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

/**
 * One restart: spawn serve, wait for the socket, then for ListContainers to return
 * `expect` containers; stop it. Also the CPU time serve had used by then: on a busy
 * machine the wall time is mostly waiting for a core.
 */
async function restartOnce(
  root: string,
  expect: number,
): Promise<{ socketMs: number; servingMs: number; cpuMs: number }> {
  const socket = join(root, 'cri.sock');
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      CLI_MAIN,
      'serve',
      '--root',
      root,
      '--state-dir',
      join(root, 'state'),
      '--socket',
      socket,
      '--node',
      NODE,
      '--log-level',
      'warn',
      '--containerd-address',
      join(root, 'no-containerd.sock'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  try {
    while (!(await accepts(socket))) {
      if (exitCode !== undefined) throw new Error(`serve exited (${exitCode}) before serving:\n${stderr}`);
      if (performance.now() - started > SERVING_TIMEOUT_MS)
        throw new Error(`serve did not bind its socket:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const socketMs = performance.now() - started;
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    const client = new Constructor(`unix://${socket}`, credentials.createInsecure()) as unknown as Client & {
      listContainers: ListCall;
    };
    try {
      const response = await new Promise<{ containers: unknown[] }>((resolve, reject) =>
        client.listContainers({}, { deadline: Date.now() + SERVING_TIMEOUT_MS }, (e, r) =>
          e ? reject(e) : resolve(r),
        ),
      );
      const servingMs = performance.now() - started;
      const cpu = await cpuMs(child.pid!);
      if (response.containers.length !== expect)
        throw new Error(`ListContainers returned ${response.containers.length} containers, wanted ${expect}`);
      return { socketMs, servingMs, cpuMs: cpu };
    } finally {
      client.close();
    }
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

export async function runRestartBench(args: string[]): Promise<void> {
  const events = flag(args, 'events', 100_000);
  const live = flag(args, 'containers', 1_000);
  const runs = flag(args, 'runs', 7);
  // The fixtures' few-byte specs instead of full-size ones: shows what the spec bytes cost.
  const fixtureSpecs = args.includes('--fixture-specs');
  const root = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-restart-'));
  try {
    const builtAt = performance.now();
    const built = await buildLog(join(root, 'ledger'), { events, live, perPod: 4, fixtureSpecs });
    console.log(
      `wrote ${events} events (${(built.bytes / 1e6).toFixed(1)} MB of JSON, ${built.live} live containers, ${built.inFlight} sagas in flight) in ${((performance.now() - builtAt) / 1000).toFixed(1)}s`,
    );
    const loadBefore = loadavg()[0]!;
    const socket: number[] = [];
    const serving: number[] = [];
    const cpu: number[] = [];
    // The first start reads the log cold from disk; it is reported apart, not in p50.
    const cold = await restartOnce(root, live);
    for (let i = 0; i < runs; i++) {
      const r = await restartOnce(root, live);
      socket.push(r.socketMs);
      serving.push(r.servingMs);
      cpu.push(r.cpuMs);
      console.log(
        `run ${i + 1}: socket ${r.socketMs.toFixed(0)} ms, ListContainers ${r.servingMs.toFixed(0)} ms, serve's CPU by then ${r.cpuMs.toFixed(0)} ms`,
      );
    }
    const after = await LevelDbEventLog.open({ dir: join(root, 'ledger'), node: NODE });
    const head = after.head();
    await after.close();
    if (head !== events) throw new Error(`the restarts changed the log: ${head} events, wanted ${events}`);
    socket.sort((a, b) => a - b);
    serving.sort((a, b) => a - b);
    cpu.sort((a, b) => a - b);
    const rows: Row[] = [
      { metric: 'restart_to_serving_p50_ms', value: percentile(serving, 50), unit: 'ms', target: '< 2,000 ms' },
      { metric: 'restart_to_serving_max_ms', value: serving[serving.length - 1]!, unit: 'ms' },
      { metric: 'restart_to_socket_p50_ms', value: percentile(socket, 50), unit: 'ms' },
      { metric: 'restart_cpu_p50_ms', value: percentile(cpu, 50), unit: 'ms' },
      { metric: 'restart_to_serving_first_ms', value: cold.servingMs, unit: 'ms' },
      { metric: 'log_events', value: events, unit: 'events' },
      { metric: 'log_live_containers', value: built.live, unit: 'containers' },
      { metric: 'log_json_mb', value: built.bytes / 1e6, unit: 'MB' },
    ];
    const round2 = (n: number): number => Math.round(n * 100) / 100;
    report(fixtureSpecs ? 'restart-fixture-specs' : 'restart', rows, {
      runs,
      spec: fixtureSpecs ? 'fixture (~200 bytes)' : 'full-size (~4 KB)',
      load_avg_1m_before: round2(loadBefore),
      load_avg_1m_after: round2(loadavg()[0]!),
      cores: availableParallelism(),
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
