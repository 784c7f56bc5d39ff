import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PrivateContainerd } from '../test/support/containerd.js';
import {
  call,
  catchInterrupts,
  connect,
  containerConfig,
  describeError,
  makeContainerLogDir,
  podConfig,
  type Runtime,
  throwIfInterrupted,
} from './support/cri-runtime.js';
import { type SideBySide, startSideBySide, stopSideBySide } from './support/side-by-side.js';
import { percentile, report, type Row } from './table.js';

/*
 * `npm run bench -- kubelet-load [--pods N] [--churn N]`: the load kubelet puts on a runtime, played against
 * cri-ledger and then containerd's CRI on the same containerd (one after the other, the
 * same script): 110 pods of 2 containers brought up, 50 of them deleted and recreated,
 * then all torn down, while kubelet's polling runs throughout:
 *
 * - every second, the PLEG relist: ListPodSandbox and ListContainers, no filter;
 * - every 10 seconds, the stats: ListPodSandboxStats and ListContainerStats, no filter;
 * - every 5 seconds, Status.
 *
 * Pods come and go through POD_WORKERS at once (kubelet has a worker per pod, the
 * scheduler sends them in bursts). Each pod: RunPodSandbox, then for each container
 * CreateContainer and StartContainer; going: StopContainer (grace 10 s: the containers
 * exit on SIGTERM), StopPodSandbox, RemoveContainer, RemovePodSandbox. Pod startup is
 * from RunPodSandbox's call to the last StartContainer's answer. The service's CPU and
 * RSS are sampled every second: cri-ledger's process, and for containerd's CRI the
 * containerd process (its CRI runs inside containerd; the shims are left out for both).
 */

const DEFAULT_PODS = 110;
const CONTAINERS_PER_POD = 2;
const DEFAULT_CHURN = 50;
const POD_WORKERS = 8;
const RELIST_MS = 1_000;
const STATS_MS = 10_000;
const STATUS_MS = 5_000;
const STOP_GRACE_S = 10;

const POLLED = ['list_pod_sandbox', 'list_containers', 'list_pod_sandbox_stats', 'list_container_stats', 'status'];
const LIFECYCLE = [
  'run_pod_sandbox',
  'create_container',
  'start_container',
  'stop_container',
  'stop_pod_sandbox',
  'remove_container',
  'remove_pod_sandbox',
];
const METHODS: Record<string, string> = {
  list_pod_sandbox: 'listPodSandbox',
  list_containers: 'listContainers',
  list_pod_sandbox_stats: 'listPodSandboxStats',
  list_container_stats: 'listContainerStats',
  status: 'status',
  run_pod_sandbox: 'runPodSandbox',
  create_container: 'createContainer',
  start_container: 'startContainer',
  stop_container: 'stopContainer',
  stop_pod_sandbox: 'stopPodSandbox',
  remove_container: 'removeContainer',
  remove_pod_sandbox: 'removePodSandbox',
};

interface Load {
  latencies: Map<string, number[]>;
  podStartup: number[];
  /** CPU seconds the service used over the whole run. */
  cpuSeconds: number;
  wallSeconds: number;
  rssMaxMb: number;
  /** RSS right after the 110th pod was up. */
  rssAtFullMb: number;
  /** Containers ListContainers returned at full load. */
  listedAtFull: number;
  errors: string[];
}

/** Where the pods' cgroups go, as kubelet's cgroupfs driver makes them (containerd's pod stats need one). */
const CGROUP_PARENT = 'kubepods-bench';

/** podConfig with a cgroup parent per pod, as kubelet always sends one. */
function kubeletPod(name: string, logRoot: string): object {
  const base = podConfig(name, logRoot) as { linux: object };
  return { ...base, linux: { ...base.linux, cgroupParent: `/${CGROUP_PARENT}/pod-${name}` } };
}

/** A container that exits on SIGTERM, as a well-behaved app does: StopContainer measures the runtime, not a grace period. */
function appConfig(pod: string, name: string): object {
  return { ...containerConfig(pod, name), command: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'] };
}

function procStat(pid: number): { cpuSeconds: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuSeconds: ticks / 100, rssMb: Number(rss?.[1] ?? 0) / 1024 };
}

/** The pid of the containerd that reads `<root>/config.toml`. */
function containerdPid(containerd: PrivateContainerd): number {
  const config = join(containerd.root, '..', 'config.toml');
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('containerd') && argv.includes('--config') && argv.some((a) => a === config))
        return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no containerd process with --config ${config}`);
}

interface Shape {
  pods: number;
  churn: number;
}

async function playLoad(runtime: Runtime, pid: number, logRoot: string, tag: string, shape: Shape): Promise<Load> {
  const latencies = new Map([...POLLED, ...LIFECYCLE].map((rpc) => [rpc, [] as number[]]));
  const errors: string[] = [];
  const podStartup: number[] = [];
  const timedCall = async <T>(rpc: string, request: object): Promise<T | undefined> => {
    const started = performance.now();
    try {
      const response = await call<T>(runtime, METHODS[rpc]!, request);
      latencies.get(rpc)!.push(performance.now() - started);
      return response;
    } catch (error) {
      errors.push(`${rpc}: ${describeError(error)}`);
      return undefined;
    }
  };
  // The polling loops: each waits for its own call before the next tick, as kubelet's do.
  let polling = true;
  const poll = async (every: number, rpcs: string[]): Promise<void> => {
    while (polling) {
      const started = performance.now();
      for (const rpc of rpcs) await timedCall(rpc, rpc === 'status' ? { verbose: false } : {});
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, every - (performance.now() - started))));
    }
  };
  const pollers = [
    poll(RELIST_MS, ['list_pod_sandbox', 'list_containers']),
    poll(STATS_MS, ['list_pod_sandbox_stats', 'list_container_stats']),
    poll(STATUS_MS, ['status']),
  ];
  const first = procStat(pid);
  let rssMaxMb = first.rssMb;
  const sampler = setInterval(() => (rssMaxMb = Math.max(rssMaxMb, procStat(pid).rssMb)), 1_000);
  const wallStarted = performance.now();

  const up = async (name: string): Promise<{ pod: string; containers: string[] } | undefined> => {
    throwIfInterrupted();
    const started = performance.now();
    const sandboxConfig = kubeletPod(name, logRoot);
    const sandbox = await timedCall<{ podSandboxId: string }>('run_pod_sandbox', { config: sandboxConfig });
    if (!sandbox) return undefined;
    runtime.pods.add(sandbox.podSandboxId);
    const containers: string[] = [];
    for (let c = 0; c < CONTAINERS_PER_POD; c++) {
      await makeContainerLogDir(logRoot, name, `c${c}`);
      const created = await timedCall<{ containerId: string }>('create_container', {
        podSandboxId: sandbox.podSandboxId,
        sandboxConfig,
        config: appConfig(name, `c${c}`),
      });
      if (!created) return { pod: sandbox.podSandboxId, containers };
      containers.push(created.containerId);
      if (!(await timedCall('start_container', { containerId: created.containerId })))
        return { pod: sandbox.podSandboxId, containers };
    }
    podStartup.push(performance.now() - started);
    return { pod: sandbox.podSandboxId, containers };
  };
  const down = async (p: { pod: string; containers: string[] }): Promise<void> => {
    throwIfInterrupted();
    await Promise.all(
      p.containers.map((containerId) => timedCall('stop_container', { containerId, timeout: STOP_GRACE_S })),
    );
    await timedCall('stop_pod_sandbox', { podSandboxId: p.pod });
    for (const containerId of p.containers) await timedCall('remove_container', { containerId });
    if (await timedCall('remove_pod_sandbox', { podSandboxId: p.pod })) runtime.pods.delete(p.pod);
  };
  /** Runs `jobs` through POD_WORKERS at once. */
  const pool = async <T>(jobs: Array<() => Promise<T>>): Promise<T[]> => {
    const out: T[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: POD_WORKERS }, async () => {
        while (next < jobs.length) {
          const i = next++;
          out[i] = await jobs[i]!();
        }
      }),
    );
    return out;
  };

  let listedAtFull = 0;
  let rssAtFullMb = 0;
  try {
    const pods = await pool(Array.from({ length: shape.pods }, (_, i) => () => up(`${tag}-${i}`)));
    rssAtFullMb = procStat(pid).rssMb;
    const listed = await call<{ containers: unknown[] }>(runtime, 'listContainers', {});
    listedAtFull = listed.containers.length;
    // Churn: the first shape.churn pods are deleted and recreated under new names, as a rollout does.
    const churned = await pool(
      pods.slice(0, shape.churn).map((p, i) => async () => {
        if (p) await down(p);
        return up(`${tag}-r${i}`);
      }),
    );
    const remaining = [...churned, ...pods.slice(shape.churn)].filter((p) => p !== undefined);
    await pool(remaining.map((p) => () => down(p)));
  } finally {
    polling = false;
    clearInterval(sampler);
    await Promise.all(pollers);
  }
  const last = procStat(pid);
  return {
    latencies,
    podStartup,
    cpuSeconds: last.cpuSeconds - first.cpuSeconds,
    wallSeconds: (performance.now() - wallStarted) / 1000,
    rssMaxMb,
    rssAtFullMb,
    listedAtFull,
    errors,
  };
}

export async function runKubeletLoadBench(args: string[]): Promise<void> {
  const option = (name: string, fallback: number): number => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  const shape: Shape = { pods: option('--pods', DEFAULT_PODS), churn: option('--churn', DEFAULT_CHURN) };
  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-kubelet-'));
  const logRoot = join(work, 'pod-logs');
  const side: SideBySide = { work, logRoot, cgroupParents: [CGROUP_PARENT] };
  const runtimes: Runtime[] = [];
  try {
    const { containerd, serve } = await startSideBySide(side);
    const ledger = connect('cri_ledger', serve.socket);
    const cri = connect('containerd_cri', containerd.address);
    runtimes.push(ledger, cri);
    const loads = new Map<string, Load>();
    loads.set('cri_ledger', await playLoad(ledger, serve.child.pid!, logRoot, 'kl', shape));
    loads.set('containerd_cri', await playLoad(cri, containerdPid(containerd), logRoot, 'kc', shape));

    const rows: Row[] = [];
    const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
    const p = (xs: number[], q: number): number => (xs.length === 0 ? NaN : percentile(sorted(xs), q));
    const l = loads.get('cri_ledger')!;
    const c = loads.get('containerd_cri')!;
    for (const rpc of [...POLLED, ...LIFECYCLE]) {
      for (const q of [50, 99]) {
        const mine = p(l.latencies.get(rpc)!, q);
        const theirs = p(c.latencies.get(rpc)!, q);
        rows.push({ metric: `cri_ledger_${rpc}_p${q}_ms`, value: mine, unit: 'ms' });
        rows.push({ metric: `containerd_cri_${rpc}_p${q}_ms`, value: theirs, unit: 'ms' });
        rows.push({
          metric: `${rpc}_p${q}_ratio_vs_containerd`,
          value: mine / theirs,
          unit: 'x',
          target: '<= 1.0',
        });
      }
    }
    for (const q of [50, 99]) {
      rows.push({ metric: `cri_ledger_pod_startup_p${q}_ms`, value: p(l.podStartup, q), unit: 'ms' });
      rows.push({ metric: `containerd_cri_pod_startup_p${q}_ms`, value: p(c.podStartup, q), unit: 'ms' });
      rows.push({
        metric: `pod_startup_p${q}_ratio_vs_containerd`,
        value: p(l.podStartup, q) / p(c.podStartup, q),
        unit: 'x',
        target: '<= 1.0',
      });
    }
    for (const [key, load] of loads) {
      rows.push({ metric: `${key}_cpu_seconds`, value: load.cpuSeconds, unit: 's' });
      rows.push({
        metric: `${key}_cpu_percent_of_one_core`,
        value: (100 * load.cpuSeconds) / load.wallSeconds,
        unit: '%',
      });
      rows.push({
        metric: `${key}_rss_at_full_mb`,
        value: load.rssAtFullMb,
        unit: 'MB',
        ...(key === 'cri_ledger' ? { target: '< 150' } : {}),
      });
      rows.push({ metric: `${key}_rss_max_mb`, value: load.rssMaxMb, unit: 'MB' });
      rows.push({ metric: `${key}_containers_listed_at_full`, value: load.listedAtFull, unit: 'containers' });
      rows.push({ metric: `${key}_errors`, value: load.errors.length, unit: 'errors' });
      rows.push({ metric: `${key}_wall_seconds`, value: load.wallSeconds, unit: 's' });
    }
    rows.push({
      metric: `list_containers_p99_ms_at_${shape.pods * CONTAINERS_PER_POD}`,
      value: p(l.latencies.get('list_containers')!, 99),
      unit: 'ms',
      target: '< 2',
    });
    rows.push({
      metric: 'cpu_seconds_ratio_vs_containerd',
      value: l.cpuSeconds / c.cpuSeconds,
      unit: 'x',
      target: '<= 1.0',
    });
    report('kubelet-load', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      pods: shape.pods,
      containers_per_pod: CONTAINERS_PER_POD,
      churn: shape.churn,
      pod_workers: POD_WORKERS,
      errors: Object.fromEntries([...loads].map(([k, v]) => [k, v.errors.slice(0, 20)])),
    });
  } finally {
    for (const runtime of runtimes) {
      for (const pod of runtime.pods) {
        await call(runtime, 'stopPodSandbox', { podSandboxId: pod }).catch(() => undefined);
        await call(runtime, 'removePodSandbox', { podSandboxId: pod }).catch(() => undefined);
      }
      runtime.client.close();
    }
    await stopSideBySide(side);
    releaseInterrupts();
  }
}
