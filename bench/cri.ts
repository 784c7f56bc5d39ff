import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../src/adapters/cri/cri-definition.js';
import { startServe, type ServeProcess } from '../test/support/cli.js';
import { mountsUnder, type PrivateContainerd } from '../test/support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../test/support/oci-image.js';
import { CONTAINERD_CRI_NAMESPACE, startContainerdWithCri } from './support/containerd-with-cri.js';
import { percentile, report, type Row } from './table.js';

/*
 * The same RunPodSandbox + CreateContainer workload against cri-ledger and against
 * containerd's built-in CRI, both on one private containerd (CRI plugin enabled, its
 * pods in `k8s.io`; cri-ledger's in `cri-ledger`). Host-network pods, so CNI is not
 * measured; the containers are created, not started (cri-ledger has no StartContainer yet).
 *
 * Order: after a warm-up, the sequential phase interleaves the runtimes call pair by call
 * pair (the first one alternates every iteration), so both see the same containerd load;
 * the concurrent phase runs one runtime at a time, cleaning up after each, in rounds that
 * alternate which runtime goes first (A B, B A, ...).
 */

const LEDGER_NAMESPACE = 'cri-ledger';
const DEFAULT_SEQUENTIAL_ITERATIONS = 50;
const DEFAULT_CONCURRENT_PODS = 50;
const DEFAULT_CONCURRENT_WORKERS = 8;
const DEFAULT_CONCURRENT_ROUNDS = 2;
const DEFAULT_WARMUP_ITERATIONS = 3;
const DEFAULT_CALL_TIMEOUT_MS = 60_000;
const HEX_ID = /^[0-9a-f]{64}$/;

// Ctrl-C or SIGTERM stops the workload at the next pod, so the cleanup below still runs
// (pods, cri-ledger's /dev/shm mounts and temp dirs; containerd has its own watchdog).
let interrupted: NodeJS.Signals | undefined;
const interrupt = (signal: NodeJS.Signals): void => {
  interrupted = signal;
};

type Rpc = 'run_pod_sandbox' | 'create_container';
type Callback = (error: ServiceError | null, response: Record<string, unknown>) => void;
type Call = (request: object, options: { deadline: number }, callback: Callback) => void;

/** One CRI endpoint under test, with what it measured and the pods it still holds. */
interface Runtime {
  key: 'cri_ledger' | 'containerd_cri';
  client: Client & Record<string, Call>;
  pods: Set<string>;
  errors: string[];
}

interface Latencies {
  run_pod_sandbox: number[];
  create_container: number[];
}

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} wants a positive integer`);
  return value;
}

function connect(key: Runtime['key'], socket: string): Runtime {
  const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
  const client = new Constructor(`unix://${socket}`, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 << 20,
    'grpc.max_send_message_length': 16 << 20,
  }) as Client & Record<string, Call>;
  return { key, client, pods: new Set(), errors: [] };
}

function call<T = Record<string, unknown>>(runtime: Runtime, method: string, request: object): Promise<T> {
  return new Promise((resolve, reject) =>
    runtime.client[method]!.call(runtime.client, request, { deadline: Date.now() + DEFAULT_CALL_TIMEOUT_MS }, (error, response) =>
      error ? reject(error) : resolve(response as T),
    ),
  );
}

/**
 * The pod both runtimes get: host network, pid per container, ipc per pod. No hostname,
 * as kubelet sends for host-network pods: a host-network pod shares the host's UTS
 * namespace, and runc refuses to set a hostname there (containerd's CRI passes it on).
 */
function podConfig(name: string, logRoot: string): object {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'bench', attempt: 0 },
    logDirectory: join(logRoot, name),
    labels: { bench: 'cri', pod: name },
    annotations: { 'bench.cri-ledger.io/run': 'cri' },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
}

function containerConfig(pod: string): object {
  return {
    metadata: { name: 'app', attempt: 0 },
    image: { image: 'busybox' },
    command: ['sleep', '3600'],
    envs: [
      { key: 'MODE', value: 'bench' },
      { key: 'POD', value: pod },
    ],
    labels: { tier: 'bench', pod },
    logPath: 'app/0.log',
  };
}

function describeError(error: unknown): string {
  const e = error as Partial<ServiceError>;
  return e.code !== undefined ? `code ${e.code}: ${e.details ?? e.message}` : String(error);
}

/** RunPodSandbox then CreateContainer; each call's latency goes to `into`, failures to runtime.errors. */
async function podWithContainer(runtime: Runtime, name: string, logRoot: string, into: Latencies): Promise<boolean> {
  if (interrupted) throw new Error(`interrupted by ${interrupted}: cleaning up`);
  const sandboxConfig = podConfig(name, logRoot);
  let podId: string;
  let started = performance.now();
  try {
    podId = (await call<{ podSandboxId: string }>(runtime, 'runPodSandbox', { config: sandboxConfig })).podSandboxId;
    into.run_pod_sandbox.push(performance.now() - started);
  } catch (error) {
    runtime.errors.push(`RunPodSandbox ${name}: ${describeError(error)}`);
    return false;
  }
  if (!HEX_ID.test(podId)) {
    runtime.errors.push(`RunPodSandbox ${name}: id ${JSON.stringify(podId)} is not 64 hex`);
    return false;
  }
  runtime.pods.add(podId);
  started = performance.now();
  try {
    const containerId = (await call<{ containerId: string }>(runtime, 'createContainer', { podSandboxId: podId, config: containerConfig(name), sandboxConfig })).containerId;
    into.create_container.push(performance.now() - started);
    if (!HEX_ID.test(containerId)) {
      runtime.errors.push(`CreateContainer ${name}: id ${JSON.stringify(containerId)} is not 64 hex`);
      return false;
    }
  } catch (error) {
    runtime.errors.push(`CreateContainer ${name}: ${describeError(error)}`);
    return false;
  }
  return true;
}

/** Checks that the runtime lists `expected` created containers, one per pod it holds. */
async function verifyListed(runtime: Runtime, expected: number): Promise<void> {
  const containers = (await call<{ containers: Array<{ state: string }> }>(runtime, 'listContainers', { filter: { labelSelector: { tier: 'bench' } } })).containers;
  const created = containers.filter((c) => c.state === 'CONTAINER_CREATED').length;
  if (created !== expected) runtime.errors.push(`ListContainers: ${created} created containers listed, ${expected} expected`);
}

/**
 * Stops and removes every pod the runtime holds, then anything ListPodSandbox still shows
 * (a pod whose RunPodSandbox failed late). Two passes at most; failures are recorded.
 */
async function removeAll(runtime: Runtime, record: boolean): Promise<void> {
  for (let pass = 0; pass < 2; pass++) {
    const listed = await call<{ items: Array<{ id: string }> }>(runtime, 'listPodSandbox', {}).then(
      (r) => r.items.map((i) => i.id),
      () => [],
    );
    const ids = new Set([...runtime.pods, ...listed]);
    if (ids.size === 0) return;
    for (const id of ids) {
      try {
        await call(runtime, 'stopPodSandbox', { podSandboxId: id });
        await call(runtime, 'removePodSandbox', { podSandboxId: id });
        runtime.pods.delete(id);
      } catch (error) {
        if (record && pass === 1) runtime.errors.push(`cleanup of ${id.slice(0, 12)}: ${describeError(error)}`);
      }
    }
  }
}

const emptyLatencies = (): Latencies => ({ run_pod_sandbox: [], create_container: [] });

/** Concurrent-phase totals of one runtime, summed over its rounds. */
interface ConcurrentResult {
  latencies: Latencies;
  completed: number;
  seconds: number;
}

/**
 * One round: `workers` callers take pod numbers from one counter until `pods` were
 * attempted. Adds its latencies, completed pod+container pairs and wall time to `into`.
 */
async function concurrentRound(runtime: Runtime, round: number, pods: number, workers: number, logRoot: string, into: ConcurrentResult): Promise<void> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < pods) {
        const n = next++;
        if (await podWithContainer(runtime, `conc-${runtime.key.replace('_', '-')}-${round}-${n}`, logRoot, into.latencies)) into.completed++;
      }
    }),
  );
  into.seconds += (performance.now() - started) / 1000;
}

function latencyRows(key: string, phase: 'seq' | 'concurrent', latencies: Latencies, withMax: boolean): Row[] {
  const rows: Row[] = [];
  for (const rpc of ['run_pod_sandbox', 'create_container'] as const) {
    const sorted = [...latencies[rpc]].sort((a, b) => a - b);
    rows.push({ metric: `${key}_${rpc}_${phase}_p50_ms`, value: percentile(sorted, 50), unit: 'ms' });
    rows.push({ metric: `${key}_${rpc}_${phase}_p95_ms`, value: percentile(sorted, 95), unit: 'ms' });
    if (withMax) rows.push({ metric: `${key}_${rpc}_${phase}_max_ms`, value: sorted.at(-1) ?? NaN, unit: 'ms' });
  }
  return rows;
}

/**
 * The headline figures: cri-ledger's CreateContainer p50 and p99 (sequential),
 * and its ratios to containerd's CRI (latency: lower is better; throughput: higher is).
 */
function headlineRows(rows: Row[], ledgerSeq: Latencies): Row[] {
  const v = (metric: string): number => rows.find((r) => r.metric === metric)?.value ?? NaN;
  const create = [...ledgerSeq.create_container].sort((a, b) => a - b);
  return [
    { metric: 'create_container_p50_ms', value: percentile(create, 50), unit: 'ms' },
    { metric: 'create_container_p99_ms', value: percentile(create, 99), unit: 'ms' },
    { metric: 'create_container_p50_ratio_vs_containerd', value: v('cri_ledger_create_container_seq_p50_ms') / v('containerd_cri_create_container_seq_p50_ms'), unit: 'x', target: '<= 1.0' },
    { metric: 'run_pod_sandbox_p50_ratio_vs_containerd', value: v('cri_ledger_run_pod_sandbox_seq_p50_ms') / v('containerd_cri_run_pod_sandbox_seq_p50_ms'), unit: 'x', target: '<= 1.1' },
    { metric: 'create_container_concurrent_per_s_ratio_vs_containerd', value: v('cri_ledger_concurrent_pods_per_s') / v('containerd_cri_concurrent_pods_per_s'), unit: 'x' },
  ];
}

/** A side-by-side table: one line per runtime and RPC. */
function printComparison(rows: Row[], runtimes: Runtime[]): void {
  const value = (metric: string): string => {
    const v = rows.find((r) => r.metric === metric)?.value;
    if (v === undefined || Number.isNaN(v)) return '-';
    return Number.isInteger(v) || v >= 100 ? String(Math.round(v)) : v.toFixed(1);
  };
  const header = ['runtime', 'rpc', 'seq p50', 'seq p95', 'seq max', 'conc p50', 'conc p95', 'conc pods/s', 'errors'];
  const lines = [header];
  for (const { key } of runtimes) {
    for (const rpc of ['run_pod_sandbox', 'create_container'] as Rpc[]) {
      lines.push([
        key,
        rpc,
        value(`${key}_${rpc}_seq_p50_ms`),
        value(`${key}_${rpc}_seq_p95_ms`),
        value(`${key}_${rpc}_seq_max_ms`),
        value(`${key}_${rpc}_concurrent_p50_ms`),
        value(`${key}_${rpc}_concurrent_p95_ms`),
        rpc === 'run_pod_sandbox' ? value(`${key}_concurrent_pods_per_s`) : '',
        rpc === 'run_pod_sandbox' ? value(`${key}_errors`) : '',
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  console.log('\ncri: latencies in ms');
  for (const l of lines) console.log(l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

export async function runCriBench(args: string[]): Promise<void> {
  const iterations = flag(args, 'iterations', DEFAULT_SEQUENTIAL_ITERATIONS);
  const concurrentPods = flag(args, 'concurrent-pods', DEFAULT_CONCURRENT_PODS);
  const workers = flag(args, 'workers', DEFAULT_CONCURRENT_WORKERS);
  const warmup = flag(args, 'warmup', DEFAULT_WARMUP_ITERATIONS);
  const rounds = flag(args, 'rounds', DEFAULT_CONCURRENT_ROUNDS);

  process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-cri-'));
  const logRoot = join(work, 'pod-logs');
  let containerd: PrivateContainerd | undefined;
  let serve: ServeProcess | undefined;
  const runtimes: Runtime[] = [];
  try {
    containerd = await startContainerdWithCri();
    for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) {
      const image = await buildTestImage(spec, join(work, 'images'));
      for (const namespace of [CONTAINERD_CRI_NAMESPACE, LEDGER_NAMESPACE]) await importTestImage(containerd.address, namespace, image);
    }
    await mkdir(join(work, 'cni'));
    await mkdir(logRoot);
    serve = await startServe({
      root: join(work, 'ledger'),
      socket: join(work, 'cri-ledger.sock'),
      args: ['--containerd-address', containerd.address, '--containerd-namespace', LEDGER_NAMESPACE, '--cni-conf-dir', join(work, 'cni'), '--restrict-oom-score-adj', 'true'],
    });
    runtimes.push(connect('cri_ledger', serve.socket), connect('containerd_cri', containerd.address));
    for (const runtime of runtimes) {
      const version = await call<{ runtimeName: string; runtimeVersion: string }>(runtime, 'version', { version: 'v1' });
      console.error(`${runtime.key}: ${version.runtimeName} ${version.runtimeVersion}`);
    }

    // Warm-up: first calls load code paths and caches on both sides; not measured.
    for (const runtime of runtimes) {
      for (let i = 0; i < warmup; i++) await podWithContainer(runtime, `warm-${runtime.key.replace('_', '-')}-${i}`, logRoot, emptyLatencies());
      await removeAll(runtime, true);
      if (runtime.errors.length > 0) throw new Error(`${runtime.key} failed the warm-up:\n${runtime.errors.join('\n')}`);
    }

    const seq = new Map(runtimes.map((r) => [r.key, emptyLatencies()]));
    const seqOk = new Map(runtimes.map((r) => [r.key, 0]));
    for (let i = 0; i < iterations; i++) {
      const order = i % 2 === 0 ? runtimes : [...runtimes].reverse();
      for (const runtime of order) {
        if (await podWithContainer(runtime, `seq-${runtime.key.replace('_', '-')}-${i}`, logRoot, seq.get(runtime.key)!)) seqOk.set(runtime.key, seqOk.get(runtime.key)! + 1);
      }
    }
    for (const runtime of runtimes) {
      await verifyListed(runtime, seqOk.get(runtime.key)!);
      await removeAll(runtime, true);
    }

    // Rounds alternate which runtime goes first (containerd's CRI in round 0), and each
    // round starts from empty namespaces: the runtime that did not run is not holding pods.
    const conc = new Map(runtimes.map((r): [string, ConcurrentResult] => [r.key, { latencies: emptyLatencies(), completed: 0, seconds: 0 }]));
    for (let round = 0; round < rounds; round++) {
      for (const runtime of round % 2 === 0 ? [...runtimes].reverse() : runtimes) {
        await concurrentRound(runtime, round, concurrentPods, workers, logRoot, conc.get(runtime.key)!);
        await removeAll(runtime, true);
      }
    }

    const rows: Row[] = [];
    for (const runtime of runtimes) {
      rows.push(...latencyRows(runtime.key, 'seq', seq.get(runtime.key)!, true));
      const c = conc.get(runtime.key)!;
      rows.push({ metric: `${runtime.key}_concurrent_pods_per_s`, value: c.completed / c.seconds, unit: 'pods/s' });
      rows.push(...latencyRows(runtime.key, 'concurrent', c.latencies, false));
      rows.push({ metric: `${runtime.key}_errors`, value: runtime.errors.length, unit: 'errors' });
    }
    rows.push(...headlineRows(rows, seq.get('cri_ledger')!));
    report('cri', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      sequential_iterations: iterations,
      concurrent_pods: concurrentPods,
      concurrent_workers: workers,
      concurrent_rounds: rounds,
      warmup_iterations: warmup,
      order: 'sequential: interleaved per iteration, first runtime alternating; concurrent: rounds alternate the first runtime (containerd_cri first in round 0)',
      errors: Object.fromEntries(runtimes.map((r) => [r.key, r.errors.slice(0, 20)])),
    });
    printComparison(rows, runtimes);
    for (const runtime of runtimes) for (const e of runtime.errors.slice(0, 10)) console.error(`${runtime.key}: ${e}`);
  } finally {
    for (const runtime of runtimes) await removeAll(runtime, false).catch(() => undefined);
    for (const runtime of runtimes) runtime.client.close();
    await serve?.stop('SIGTERM').catch(() => undefined);
    await containerd?.stop().catch((error: unknown) => console.error(`containerd cleanup: ${String(error)}`));
    // cri-ledger's pods keep a /dev/shm tmpfs under its state dir.
    for (const mount of mountsUnder(work)) execFileSync('umount', ['-l', mount]);
    await rm(work, { recursive: true, force: true });
    process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
  }
}
