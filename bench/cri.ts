import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServe, type ServeProcess } from '../test/support/cli.js';
import { mountsUnder, type PrivateContainerd } from '../test/support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../test/support/oci-image.js';
import {
  containerStatusPhase,
  cycleContainer,
  emptyLifecycleLatencies,
  podWithContainers,
  LIFECYCLE_RPCS,
  lifecyclePhase,
  LIST_CONTAINERS_PER_POD,
  STOP_TIMEOUT_S,
  listContainersPhase,
  type LifecycleLatencies,
} from './cri-lifecycle.js';
import { CONTAINERD_CRI_NAMESPACE, startContainerdWithCri } from './support/containerd-with-cri.js';
import {
  call,
  catchInterrupts,
  connect,
  containerConfig,
  describeError,
  HEX_ID,
  makeContainerLogDir,
  podConfig,
  throwIfInterrupted,
  type Runtime,
} from './support/cri-runtime.js';
import { DEFAULT_READ_CALLS, pathAuthorityClient, readRows, readsPhase, type ReadTarget } from './cri-reads.js';
import { percentile, report, type Row } from './table.js';

/*
 * The same CRI workload against cri-ledger and against containerd's built-in CRI, both
 * on one private containerd (CRI plugin enabled, its pods in `k8s.io`; cri-ledger's in
 * `cri-ledger`). Host-network pods, so CNI is not measured.
 *
 * Order: after a warm-up, the sequential phase interleaves the runtimes call pair by call
 * pair (the first one alternates every iteration), so both see the same containerd load;
 * the lifecycle phase (bench/cri-lifecycle.ts) then starts, stops and removes those
 * containers the same way. The concurrent phase runs one runtime at a time, cleaning up
 * after each, in rounds that alternate which runtime goes first (A B, B A, ...). Last,
 * cri-ledger alone: ContainerStatus of a running container, and ListContainers over a
 * store of many containers.
 */

const LEDGER_NAMESPACE = 'cri-ledger';
const DEFAULT_SEQUENTIAL_ITERATIONS = 50;
const DEFAULT_CONCURRENT_PODS = 50;
const DEFAULT_CONCURRENT_WORKERS = 8;
const DEFAULT_CONCURRENT_ROUNDS = 2;
const DEFAULT_WARMUP_ITERATIONS = 3;
const DEFAULT_STATUS_CALLS = 1000;
const DEFAULT_LIST_CONTAINERS = 1000;
const DEFAULT_LIST_CALLS = 200;

type Rpc = 'run_pod_sandbox' | 'create_container';

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

/**
 * RunPodSandbox then CreateContainer; each call's latency goes to `into`, failures to
 * runtime.errors. Returns the container's id, or undefined when a step failed.
 */
async function podWithContainer(
  runtime: Runtime,
  name: string,
  logRoot: string,
  into: Latencies,
): Promise<string | undefined> {
  throwIfInterrupted();
  const sandboxConfig = podConfig(name, logRoot);
  let podId: string;
  let started = performance.now();
  try {
    podId = (await call<{ podSandboxId: string }>(runtime, 'runPodSandbox', { config: sandboxConfig })).podSandboxId;
    into.run_pod_sandbox.push(performance.now() - started);
  } catch (error) {
    runtime.errors.push(`RunPodSandbox ${name}: ${describeError(error)}`);
    return undefined;
  }
  if (!HEX_ID.test(podId)) {
    runtime.errors.push(`RunPodSandbox ${name}: id ${JSON.stringify(podId)} is not 64 hex`);
    return undefined;
  }
  runtime.pods.add(podId);
  await makeContainerLogDir(logRoot, name);
  started = performance.now();
  try {
    const containerId = (
      await call<{ containerId: string }>(runtime, 'createContainer', {
        podSandboxId: podId,
        config: containerConfig(name),
        sandboxConfig,
      })
    ).containerId;
    into.create_container.push(performance.now() - started);
    if (!HEX_ID.test(containerId)) {
      runtime.errors.push(`CreateContainer ${name}: id ${JSON.stringify(containerId)} is not 64 hex`);
      return undefined;
    }
    return containerId;
  } catch (error) {
    runtime.errors.push(`CreateContainer ${name}: ${describeError(error)}`);
    return undefined;
  }
}

/** Checks that the runtime lists `expected` created containers, one per pod it holds. */
async function verifyListed(runtime: Runtime, expected: number): Promise<void> {
  const containers = (
    await call<{ containers: Array<{ state: string }> }>(runtime, 'listContainers', {
      filter: { labelSelector: { tier: 'bench' } },
    })
  ).containers;
  const created = containers.filter((c) => c.state === 'CONTAINER_CREATED').length;
  if (created !== expected)
    runtime.errors.push(`ListContainers: ${created} created containers listed, ${expected} expected`);
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
async function concurrentRound(
  runtime: Runtime,
  round: number,
  pods: number,
  workers: number,
  logRoot: string,
  into: ConcurrentResult,
): Promise<void> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < pods) {
        const n = next++;
        if (
          await podWithContainer(
            runtime,
            `conc-${runtime.key.replace('_', '-')}-${round}-${n}`,
            logRoot,
            into.latencies,
          )
        )
          into.completed++;
      }
    }),
  );
  into.seconds += (performance.now() - started) / 1000;
}

function latencyRows(
  key: string,
  phase: 'seq' | 'concurrent',
  latencies: Partial<Latencies & LifecycleLatencies>,
  withMax: boolean,
): Row[] {
  const rows: Row[] = [];
  for (const [rpc, values] of Object.entries(latencies)) {
    const sorted = [...values].sort((a, b) => a - b);
    rows.push({ metric: `${key}_${rpc}_${phase}_p50_ms`, value: percentile(sorted, 50), unit: 'ms' });
    rows.push({ metric: `${key}_${rpc}_${phase}_p95_ms`, value: percentile(sorted, 95), unit: 'ms' });
    if (withMax) rows.push({ metric: `${key}_${rpc}_${phase}_max_ms`, value: sorted.at(-1) ?? NaN, unit: 'ms' });
  }
  return rows;
}

const p50 = (values: number[]): number =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

/**
 * The issues' headline figures: cri-ledger's CreateContainer p50 and p99 (sequential),
 * its ratios to containerd's CRI (latency: lower is better; throughput: higher is), and
 * its ContainerStatus and ListContainers p50.
 */
function headlineRows(
  rows: Row[],
  ledgerSeq: Latencies,
  status: number[],
  list: number[],
  listContainers: number,
): Row[] {
  const v = (metric: string): number => rows.find((r) => r.metric === metric)?.value ?? NaN;
  const create = [...ledgerSeq.create_container].sort((a, b) => a - b);
  const ratio = (rpc: string): number => v(`cri_ledger_${rpc}_seq_p50_ms`) / v(`containerd_cri_${rpc}_seq_p50_ms`);
  return [
    { metric: 'create_container_p50_ms', value: percentile(create, 50), unit: 'ms' },
    { metric: 'create_container_p99_ms', value: percentile(create, 99), unit: 'ms' },
    {
      metric: 'create_container_p50_ratio_vs_containerd',
      value: v('cri_ledger_create_container_seq_p50_ms') / v('containerd_cri_create_container_seq_p50_ms'),
      unit: 'x',
      target: '<= 1.0',
    },
    {
      metric: 'run_pod_sandbox_p50_ratio_vs_containerd',
      value: v('cri_ledger_run_pod_sandbox_seq_p50_ms') / v('containerd_cri_run_pod_sandbox_seq_p50_ms'),
      unit: 'x',
      target: '<= 1.1',
    },
    {
      metric: 'create_container_concurrent_per_s_ratio_vs_containerd',
      value: v('cri_ledger_concurrent_pods_per_s') / v('containerd_cri_concurrent_pods_per_s'),
      unit: 'x',
    },
    ...LIFECYCLE_RPCS.map(
      (rpc): Row => ({ metric: `${rpc}_p50_ratio_vs_containerd`, value: ratio(rpc), unit: 'x', target: '<= 1.0' }),
    ),
    { metric: 'container_status_p50_ms', value: p50(status), unit: 'ms', target: '<= 1' },
    { metric: `list_containers_${listContainers}_p50_ms`, value: p50(list), unit: 'ms' },
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
    for (const rpc of ['run_pod_sandbox', 'create_container', ...LIFECYCLE_RPCS] as Array<
      Rpc | (typeof LIFECYCLE_RPCS)[number]
    >) {
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
  for (const l of lines)
    console.log(l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

export async function runCriBench(args: string[]): Promise<void> {
  const iterations = flag(args, 'iterations', DEFAULT_SEQUENTIAL_ITERATIONS);
  const concurrentPods = flag(args, 'concurrent-pods', DEFAULT_CONCURRENT_PODS);
  const workers = flag(args, 'workers', DEFAULT_CONCURRENT_WORKERS);
  const warmup = flag(args, 'warmup', DEFAULT_WARMUP_ITERATIONS);
  const rounds = flag(args, 'rounds', DEFAULT_CONCURRENT_ROUNDS);
  const statusCalls = flag(args, 'status-calls', DEFAULT_STATUS_CALLS);
  const listContainers = flag(args, 'list-containers', DEFAULT_LIST_CONTAINERS);
  const listCalls = flag(args, 'list-calls', DEFAULT_LIST_CALLS);
  const readCalls = flag(args, 'read-calls', DEFAULT_READ_CALLS);
  // --ledger-main runs another build's dist/src/cli/main.js (a before/after comparison);
  // --only-reads measures Version and ContainerStatus and nothing else.
  const mainAt = args.indexOf('--ledger-main');
  const ledgerMain = mainAt >= 0 ? args[mainAt + 1] : undefined;
  const onlyReads = args.includes('--only-reads');

  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-cri-'));
  const logRoot = join(work, 'pod-logs');
  let containerd: PrivateContainerd | undefined;
  let serve: ServeProcess | undefined;
  const runtimes: Runtime[] = [];
  try {
    containerd = await startContainerdWithCri();
    for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) {
      const image = await buildTestImage(spec, join(work, 'images'));
      for (const namespace of [CONTAINERD_CRI_NAMESPACE, LEDGER_NAMESPACE])
        await importTestImage(containerd.address, namespace, image);
    }
    await mkdir(join(work, 'cni'));
    await mkdir(logRoot);
    serve = await startServe({
      warmUp: true,
      ...(ledgerMain ? { main: ledgerMain } : {}),
      root: join(work, 'ledger'),
      socket: join(work, 'cri-ledger.sock'),
      args: [
        '--containerd-address',
        containerd.address,
        '--containerd-namespace',
        LEDGER_NAMESPACE,
        '--cni-conf-dir',
        join(work, 'cni'),
        '--restrict-oom-score-adj',
        'true',
      ],
    });
    runtimes.push(connect('cri_ledger', serve.socket), connect('containerd_cri', containerd.address));
    for (const runtime of runtimes) {
      const version = await call<{ runtimeName: string; runtimeVersion: string }>(runtime, 'version', {
        version: 'v1',
      });
      console.error(`${runtime.key}: ${version.runtimeName} ${version.runtimeVersion}`);
    }

    const readTargets: ReadTarget[] = [];
    for (const runtime of runtimes) {
      const containerId = (
        await podWithContainers(runtime, `reads-${runtime.key.replace('_', '-')}`, logRoot, ['app'], 1)
      )[0]!;
      await call(runtime, 'startContainer', { containerId });
      readTargets.push({ key: runtime.key, runtime, containerId });
      if (runtime.key === 'cri_ledger')
        readTargets.push({ key: 'cri_ledger_path_authority', runtime: pathAuthorityClient(serve.socket), containerId });
    }
    const reads = readRows(await readsPhase(readTargets, readCalls));
    for (const target of readTargets) if (target.key === 'cri_ledger_path_authority') target.runtime.client.close();
    for (const runtime of runtimes) await removeAll(runtime, true);
    if (onlyReads) {
      report('cri-reads', reads, {
        measured_at: new Date().toISOString(),
        node: process.version,
        ledger_main: ledgerMain ?? 'this build',
        read_calls: readCalls,
      });
      return;
    }

    // Warm-up: first calls load code paths and caches on both sides; not measured.
    for (const runtime of runtimes) {
      for (let i = 0; i < warmup; i++) {
        const containerId = await podWithContainer(
          runtime,
          `warm-${runtime.key.replace('_', '-')}-${i}`,
          logRoot,
          emptyLatencies(),
        );
        if (containerId !== undefined) await cycleContainer(runtime, containerId, emptyLifecycleLatencies());
      }
      await removeAll(runtime, true);
      if (runtime.errors.length > 0)
        throw new Error(`${runtime.key} failed the warm-up:\n${runtime.errors.join('\n')}`);
    }

    const seq = new Map(runtimes.map((r) => [r.key, emptyLatencies()]));
    const seqContainers = new Map(runtimes.map((r) => [r.key, [] as Array<string | undefined>]));
    for (let i = 0; i < iterations; i++) {
      const order = i % 2 === 0 ? runtimes : [...runtimes].reverse();
      for (const runtime of order) {
        seqContainers.get(runtime.key)![i] = await podWithContainer(
          runtime,
          `seq-${runtime.key.replace('_', '-')}-${i}`,
          logRoot,
          seq.get(runtime.key)!,
        );
      }
    }
    for (const runtime of runtimes)
      await verifyListed(runtime, seqContainers.get(runtime.key)!.filter((id) => id !== undefined).length);
    const lifecycle = await lifecyclePhase(runtimes, seqContainers, iterations);
    for (const runtime of runtimes) await removeAll(runtime, true);

    // Rounds alternate which runtime goes first (containerd's CRI in round 0), and each
    // round starts from empty namespaces: the runtime that did not run is not holding pods.
    const conc = new Map(
      runtimes.map((r): [string, ConcurrentResult] => [
        r.key,
        { latencies: emptyLatencies(), completed: 0, seconds: 0 },
      ]),
    );
    for (let round = 0; round < rounds; round++) {
      for (const runtime of round % 2 === 0 ? [...runtimes].reverse() : runtimes) {
        await concurrentRound(runtime, round, concurrentPods, workers, logRoot, conc.get(runtime.key)!);
        await removeAll(runtime, true);
      }
    }

    // cri-ledger's reads, each from a store holding only what the phase created.
    const ledger = runtimes[0]!;
    const status = await containerStatusPhase(ledger, logRoot, statusCalls);
    await removeAll(ledger, true);
    const list = await listContainersPhase(ledger, logRoot, listContainers, listCalls);
    await removeAll(ledger, true);

    const rows: Row[] = [];
    for (const runtime of runtimes) {
      rows.push(...latencyRows(runtime.key, 'seq', { ...seq.get(runtime.key)!, ...lifecycle.get(runtime.key)! }, true));
      const c = conc.get(runtime.key)!;
      rows.push({ metric: `${runtime.key}_concurrent_pods_per_s`, value: c.completed / c.seconds, unit: 'pods/s' });
      rows.push(...latencyRows(runtime.key, 'concurrent', c.latencies, false));
      rows.push({ metric: `${runtime.key}_errors`, value: runtime.errors.length, unit: 'errors' });
    }
    rows.push(...headlineRows(rows, seq.get('cri_ledger')!, status, list, listContainers));
    rows.push(...reads);
    report('cri', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      sequential_iterations: iterations,
      concurrent_pods: concurrentPods,
      concurrent_workers: workers,
      concurrent_rounds: rounds,
      warmup_iterations: warmup,
      stop_container_timeout_s: STOP_TIMEOUT_S,
      container_status_calls: statusCalls,
      list_containers: listContainers,
      list_containers_per_pod: LIST_CONTAINERS_PER_POD,
      list_containers_calls: listCalls,
      order:
        'sequential and lifecycle: interleaved per iteration, first runtime alternating; concurrent: rounds alternate the first runtime (containerd_cri first in round 0)',
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
    releaseInterrupts();
  }
}
