import {
  call,
  containerConfig,
  makeContainerLogDir,
  podConfig,
  throwIfInterrupted,
  timed,
  type Runtime,
} from './support/cri-runtime.js';

/*
 * The container lifecycle after CreateContainer, for the `cri` bench:
 *
 * - StartContainer, StopContainer and RemoveContainer on both runtimes, on the containers
 *   the sequential phase created. Pair by pair like that phase: for each iteration, both
 *   runtimes start, then both stop, then both remove, and which runtime goes first
 *   alternates every iteration. StopContainer uses timeout 0 (SIGKILL at once): busybox
 *   `sleep` as PID 1 ignores SIGTERM, so any grace period would be waited out in full and
 *   the figure would be the timeout, not the runtime.
 * - ContainerStatus of one running container and ListContainers over a store of many
 *   created containers, cri-ledger only: these are reads of its projections.
 */

export const LIFECYCLE_RPCS = ['start_container', 'stop_container', 'remove_container'] as const;
export type LifecycleRpc = (typeof LIFECYCLE_RPCS)[number];
export type LifecycleLatencies = Record<LifecycleRpc, number[]>;

/** kubelet's StopContainer timeout is the pod's grace period; 0 means SIGKILL at once. */
export const STOP_TIMEOUT_S = 0;
/** ListContainers phase: its containers are created in pods of this many. */
export const LIST_CONTAINERS_PER_POD = 50;
const LIST_CREATE_WORKERS = 4;
const READ_WARMUP_CALLS = 20;

export const emptyLifecycleLatencies = (): LifecycleLatencies => ({
  start_container: [],
  stop_container: [],
  remove_container: [],
});

const REQUESTS: Record<LifecycleRpc, { method: string; request: (containerId: string) => object }> = {
  start_container: { method: 'startContainer', request: (containerId) => ({ containerId }) },
  stop_container: { method: 'stopContainer', request: (containerId) => ({ containerId, timeout: STOP_TIMEOUT_S }) },
  remove_container: { method: 'removeContainer', request: (containerId) => ({ containerId }) },
};

/**
 * One lifecycle step of one container; the latency goes to `into`. A container whose
 * earlier step failed is skipped (its failure is already in runtime.errors) and stays for
 * the pod cleanup, which stops and removes whatever a pod still holds.
 */
async function step(
  runtime: Runtime,
  rpc: LifecycleRpc,
  containerId: string,
  failed: Set<string>,
  into: LifecycleLatencies,
): Promise<void> {
  if (failed.has(containerId)) return;
  const { method, request } = REQUESTS[rpc];
  const ms = await timed(runtime, `${method} ${containerId.slice(0, 12)}`, method, request(containerId));
  if (ms === undefined) failed.add(containerId);
  else into[rpc].push(ms);
}

/** Start, stop and remove one container, e.g. for the warm-up. */
export async function cycleContainer(runtime: Runtime, containerId: string, into: LifecycleLatencies): Promise<void> {
  const failed = new Set<string>();
  for (const rpc of LIFECYCLE_RPCS) await step(runtime, rpc, containerId, failed, into);
}

/**
 * The measured lifecycle: `containers.get(key)[i]` is the container a runtime created in
 * sequential iteration i (undefined when that iteration failed). Afterwards each runtime
 * must list none of its bench containers.
 */
export async function lifecyclePhase(
  runtimes: Runtime[],
  containers: Map<string, Array<string | undefined>>,
  iterations: number,
): Promise<Map<string, LifecycleLatencies>> {
  const latencies = new Map(runtimes.map((r) => [r.key, emptyLifecycleLatencies()]));
  const failed = new Map(runtimes.map((r) => [r.key, new Set<string>()]));
  for (let i = 0; i < iterations; i++) {
    const order = i % 2 === 0 ? runtimes : [...runtimes].reverse();
    for (const rpc of LIFECYCLE_RPCS) {
      for (const runtime of order) {
        const id = containers.get(runtime.key)![i];
        if (id !== undefined) await step(runtime, rpc, id, failed.get(runtime.key)!, latencies.get(runtime.key)!);
      }
    }
  }
  for (const runtime of runtimes) {
    const left = (
      await call<{ containers: unknown[] }>(runtime, 'listContainers', { filter: { labelSelector: { tier: 'bench' } } })
    ).containers.length;
    const expected = failed.get(runtime.key)!.size;
    if (left !== expected)
      runtime.errors.push(`ListContainers after the lifecycle: ${left} bench containers listed, ${expected} expected`);
  }
  return latencies;
}

export async function podWithContainers(
  runtime: Runtime,
  pod: string,
  logRoot: string,
  names: string[],
  workers: number,
): Promise<string[]> {
  throwIfInterrupted();
  const sandboxConfig = podConfig(pod, logRoot);
  const { podSandboxId } = await call<{ podSandboxId: string }>(runtime, 'runPodSandbox', { config: sandboxConfig });
  runtime.pods.add(podSandboxId);
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < names.length) {
        throwIfInterrupted();
        const name = names[next++]!;
        await makeContainerLogDir(logRoot, pod, name);
        ids.push(
          (
            await call<{ containerId: string }>(runtime, 'createContainer', {
              podSandboxId,
              config: containerConfig(pod, name),
              sandboxConfig,
            })
          ).containerId,
        );
      }
    }),
  );
  return ids;
}

/**
 * ContainerStatus of one running container, `calls` times after a short unmeasured
 * warm-up. Every answer must say RUNNING. The pod is left for the caller's cleanup.
 */
export async function containerStatusPhase(runtime: Runtime, logRoot: string, calls: number): Promise<number[]> {
  const containerId = (await podWithContainers(runtime, 'status-0', logRoot, ['app'], 1))[0]!;
  await call(runtime, 'startContainer', { containerId });
  const latencies: number[] = [];
  for (let i = 0; i < READ_WARMUP_CALLS + calls; i++) {
    throwIfInterrupted();
    const started = performance.now();
    const { status } = await call<{ status: { state: string } }>(runtime, 'containerStatus', {
      containerId,
      verbose: false,
    });
    if (i >= READ_WARMUP_CALLS) latencies.push(performance.now() - started);
    if (status.state !== 'CONTAINER_RUNNING')
      throw new Error(`ContainerStatus of ${containerId.slice(0, 12)} says ${status.state}, not CONTAINER_RUNNING`);
  }
  return latencies;
}

/**
 * ListContainers with no filter over a store of `containers` created containers, in pods
 * of LIST_CONTAINERS_PER_POD, `calls` times after a short unmeasured warm-up. The store
 * must hold exactly those containers (the caller removed everything else first). The
 * pods are left for the caller's cleanup.
 */
export async function listContainersPhase(
  runtime: Runtime,
  logRoot: string,
  containers: number,
  calls: number,
): Promise<number[]> {
  for (let pod = 0; pod * LIST_CONTAINERS_PER_POD < containers; pod++) {
    const count = Math.min(LIST_CONTAINERS_PER_POD, containers - pod * LIST_CONTAINERS_PER_POD);
    await podWithContainers(
      runtime,
      `list-${pod}`,
      logRoot,
      Array.from({ length: count }, (_, i) => `app-${i}`),
      LIST_CREATE_WORKERS,
    );
  }
  const latencies: number[] = [];
  for (let i = 0; i < READ_WARMUP_CALLS + calls; i++) {
    throwIfInterrupted();
    const started = performance.now();
    const listed = (await call<{ containers: unknown[] }>(runtime, 'listContainers', {})).containers.length;
    if (i >= READ_WARMUP_CALLS) latencies.push(performance.now() - started);
    if (listed !== containers) throw new Error(`ListContainers listed ${listed} containers, ${containers} expected`);
  }
  return latencies;
}
