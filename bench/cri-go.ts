import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GoCriClient, startGoCriClient } from '../test/support/go-cri-client.js';
import {
  catchInterrupts,
  containerConfig,
  makeContainerLogDir,
  podConfig,
  throwIfInterrupted,
} from './support/cri-runtime.js';
import { type SideBySide, startSideBySide, stopSideBySide } from './support/side-by-side.js';
import { percentile, report, type Row } from './table.js';

/*
 * `npm run bench -- cri-go [--pods N]`: every lifecycle and status RPC through the Go CRI
 * client (grpc-go, as kubelet and crictl dial), cri-ledger beside containerd's CRI on
 * the same containerd. Each iteration is one pod on each runtime, the first runtime
 * alternating: RunPodSandbox, CreateContainer, StartContainer, ContainerStatus,
 * PodSandboxStatus, ImageStatus, ListContainers, StopContainer, RemoveContainer,
 * StopPodSandbox, RemovePodSandbox, in sequence, so each status call comes between
 * lifecycle calls as kubelet's do. Times are grpc-go's, in the Go process (Invoke to
 * answer). Before that, on a freshly started cri-ledger, the first 1,000 calls
 * (ContainerStatus, PodSandboxStatus, ListContainers, Version in turn) are reported
 * apart from the same calls once warm.
 */

const DEFAULT_PODS = 50;
const WARMUP_PODS = 5;
const FIRST_CALLS = 1_000;
const CGROUP_PARENT = 'cri-go-bench';

const RPCS = [
  'RunPodSandbox',
  'CreateContainer',
  'StartContainer',
  'ContainerStatus',
  'PodSandboxStatus',
  'ImageStatus',
  'ListContainers',
  'StopContainer',
  'RemoveContainer',
  'StopPodSandbox',
  'RemovePodSandbox',
] as const;
type Rpc = (typeof RPCS)[number];

interface Target {
  key: 'cri_ledger' | 'containerd_cri';
  client: GoCriClient;
  times: Map<Rpc, number[]>;
  pods: Set<string>;
}

function snake(rpc: string): string {
  return rpc.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
}

async function timed<T>(t: Target, rpc: Rpc | 'Version', request: object, service = 'runtime'): Promise<[T, number]> {
  const name = service === 'image' ? 'runtime.v1.ImageService' : 'runtime.v1.RuntimeService';
  const { response, elapsedMs } = await t.client.timed<T>(name, rpc, request, 60_000);
  return [response, elapsedMs];
}

/** One pod's whole life on one runtime, each call timed. */
async function podCycle(t: Target, name: string, logRoot: string, record: boolean): Promise<void> {
  throwIfInterrupted();
  const keep = (rpc: Rpc, ms: number): void => {
    if (record) t.times.get(rpc)!.push(ms);
  };
  const base = podConfig(name, logRoot) as { linux: object };
  const sandboxConfig = { ...base, linux: { ...base.linux, cgroupParent: `/${CGROUP_PARENT}/${name}` } };
  await makeContainerLogDir(logRoot, name);
  const [{ podSandboxId }, run] = await timed<{ podSandboxId: string }>(t, 'RunPodSandbox', { config: sandboxConfig });
  keep('RunPodSandbox', run);
  t.pods.add(podSandboxId);
  const [{ containerId }, create] = await timed<{ containerId: string }>(t, 'CreateContainer', {
    podSandboxId,
    sandboxConfig,
    config: containerConfig(name),
  });
  keep('CreateContainer', create);
  keep('StartContainer', (await timed(t, 'StartContainer', { containerId }))[1]);
  keep('ContainerStatus', (await timed(t, 'ContainerStatus', { containerId }))[1]);
  keep('PodSandboxStatus', (await timed(t, 'PodSandboxStatus', { podSandboxId }))[1]);
  keep('ImageStatus', (await timed(t, 'ImageStatus', { image: { image: 'busybox' } }, 'image'))[1]);
  keep('ListContainers', (await timed(t, 'ListContainers', {}))[1]);
  // timeout 0: busybox sleep as PID 1 ignores SIGTERM, a grace period would be waited out.
  keep('StopContainer', (await timed(t, 'StopContainer', { containerId, timeout: 0 }))[1]);
  keep('RemoveContainer', (await timed(t, 'RemoveContainer', { containerId }))[1]);
  keep('StopPodSandbox', (await timed(t, 'StopPodSandbox', { podSandboxId }))[1]);
  keep('RemovePodSandbox', (await timed(t, 'RemovePodSandbox', { podSandboxId }))[1]);
  t.pods.delete(podSandboxId);
}

/** FIRST_CALLS read calls in turn on one live pod: [first 100, 101..1000] p50s, as times. */
async function readCalls(t: Target, name: string, logRoot: string): Promise<number[]> {
  const base = podConfig(name, logRoot) as { linux: object };
  const sandboxConfig = { ...base, linux: { ...base.linux, cgroupParent: `/${CGROUP_PARENT}/${name}` } };
  await makeContainerLogDir(logRoot, name);
  const { podSandboxId } = await t.client.runtime<{ podSandboxId: string }>('RunPodSandbox', { config: sandboxConfig });
  t.pods.add(podSandboxId);
  const { containerId } = await t.client.runtime<{ containerId: string }>('CreateContainer', {
    podSandboxId,
    sandboxConfig,
    config: containerConfig(name),
  });
  const turn: Array<[Rpc | 'Version', object]> = [
    ['ContainerStatus', { containerId }],
    ['PodSandboxStatus', { podSandboxId }],
    ['ListContainers', {}],
    ['Version', { version: 'v1' }],
  ];
  const times: number[] = [];
  for (let i = 0; i < FIRST_CALLS; i++) {
    const [rpc, request] = turn[i % turn.length]!;
    times.push((await timed(t, rpc, request))[1]);
  }
  await t.client.runtime('RemoveContainer', { containerId });
  await t.client.runtime('StopPodSandbox', { podSandboxId });
  await t.client.runtime('RemovePodSandbox', { podSandboxId });
  t.pods.delete(podSandboxId);
  return times;
}

export async function runCriGoBench(args: string[]): Promise<void> {
  const at = args.indexOf('--pods');
  const pods = at >= 0 ? Number(args[at + 1]) : DEFAULT_PODS;
  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-cri-go-'));
  const logRoot = join(work, 'pod-logs');
  const side: SideBySide = { work, logRoot, cgroupParents: [CGROUP_PARENT] };
  const targets: Target[] = [];
  try {
    const { containerd, serve } = await startSideBySide(side);
    for (const [key, socket] of [
      ['cri_ledger', serve.socket],
      ['containerd_cri', containerd.address],
    ] as const)
      targets.push({
        key,
        client: startGoCriClient(socket),
        times: new Map(RPCS.map((rpc) => [rpc, []])),
        pods: new Set(),
      });
    const rows: Row[] = [];
    const p50 = (xs: number[]): number =>
      percentile(
        [...xs].sort((a, b) => a - b),
        50,
      );

    // A fresh cri-ledger's first calls, then the same calls warm (after the lifecycle phase).
    const first = new Map<string, number[]>();
    for (const t of targets) first.set(t.key, await readCalls(t, `first-${t.key.replace('_', '-')}`, logRoot));

    for (let i = 0; i < WARMUP_PODS + pods; i++) {
      for (const t of i % 2 === 0 ? targets : [...targets].reverse())
        await podCycle(t, `p${i}-${t.key.replace('_', '-')}`, logRoot, i >= WARMUP_PODS);
    }
    for (const rpc of RPCS) {
      const [mine, theirs] = targets.map((t) => p50(t.times.get(rpc)!));
      rows.push({ metric: `cri_ledger_${snake(rpc)}_p50_ms`, value: mine!, unit: 'ms' });
      rows.push({ metric: `containerd_cri_${snake(rpc)}_p50_ms`, value: theirs!, unit: 'ms' });
      rows.push({
        metric: `${snake(rpc)}_p50_ratio_vs_containerd`,
        value: mine! / theirs!,
        unit: 'x',
        target: '<= 1.0',
      });
    }
    for (const t of targets) {
      const warm = await readCalls(t, `warm-${t.key.replace('_', '-')}`, logRoot);
      const times = first.get(t.key)!;
      rows.push({ metric: `${t.key}_first_100_read_calls_p50_ms`, value: p50(times.slice(0, 100)), unit: 'ms' });
      rows.push({ metric: `${t.key}_calls_101_to_1000_p50_ms`, value: p50(times.slice(100)), unit: 'ms' });
      rows.push({ metric: `${t.key}_warm_read_calls_p50_ms`, value: p50(warm), unit: 'ms' });
      rows.push({
        metric: `${t.key}_first_100_vs_warm`,
        value: p50(times.slice(0, 100)) / p50(warm),
        unit: 'x',
      });
    }
    report('cri-go', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      client: 'grpc-go 1.33 (Debian), dist/go/cri-go-client',
      pods,
      warmup_pods: WARMUP_PODS,
    });
  } finally {
    for (const t of targets) {
      for (const pod of t.pods) {
        await t.client.runtime('StopPodSandbox', { podSandboxId: pod }).catch(() => undefined);
        await t.client.runtime('RemovePodSandbox', { podSandboxId: pod }).catch(() => undefined);
      }
      await t.client.close();
    }
    await stopSideBySide(side);
    releaseInterrupts();
  }
}
