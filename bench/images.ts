import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { get } from 'node:http';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectContainerd, type ContainerdApi } from '../src/adapters/containerd/containerd-api.js';
import { imageServiceV1 } from '../src/adapters/cri/cri-definition.js';
import { runCli, startServe, type ServeProcess } from '../test/support/cli.js';
import { mountsUnder, type PrivateContainerd } from '../test/support/containerd.js';
import { startRegistry, type TestRegistry } from '../test/support/registry.js';
import { ensureCold, type Leftovers } from './support/cold-content.js';
import { CONTAINERD_CRI_NAMESPACE, startContainerdWithCri } from './support/containerd-with-cri.js';
import {
  call,
  catchInterrupts,
  connect,
  describeError,
  throwIfInterrupted,
  type Runtime,
} from './support/cri-runtime.js';
import { DEFAULT_RANDOM_LAYERS, pushRandomImage, writeHostsDir, type PushedImage } from './support/random-image.js';
import { percentile, report, type Row } from './table.js';

/*
 * CRI PullImage of one ~100 MB, 4-layer image of random bytes from a local plain-HTTP
 * docker-registry: cri-ledger against containerd's built-in CRI, both on one private
 * containerd (cri-ledger in `cri-ledger`, containerd's CRI in `k8s.io`), both reading
 * the same hosts.toml dir.
 *
 * Every measured pull is cold: after each pull the runtime that pulled removes the image
 * (RemoveImage), and the next pull waits until no blob file of the image is left under
 * containerd's root and neither namespace has a snapshot (bench/support/cold-content.ts;
 * containerd shares blob files across namespaces, so a blob left by one runtime would
 * make the other's pull instant). The runtimes alternate pull by pull, and which goes
 * first alternates every iteration. Then ImageStatus of a present image, many calls,
 * the runtimes taking turns call by call.
 * Two figures say where cri-ledger's pull time goes: its own events (fetches, then what
 * follows the last byte) and the floor of fetching the layers into a Node process.
 */

const LEDGER_NAMESPACE = 'cri-ledger';
const REPOSITORY = 'bench/random';
const TAG = 'v1';
const DEFAULT_ITERATIONS = 5;
const DEFAULT_WARMUP_ITERATIONS = 1;
const DEFAULT_STATUS_CALLS = 1000;
const DEFAULT_LAYER_MB = 25;
/**
 * Calls before the measured ones: kubelet asks a long-running service, and cri-ledger's
 * first few thousand calls run while V8 still compiles the gRPC and image paths (medians
 * per 250 calls fall from ~1.2 ms to ~0.3 ms over them). Their p50 is reported apart.
 */
const STATUS_WARMUP_CALLS = 3000;
const PULL_TIMEOUT_MS = 10 * 60_000;
const LOAD_SAMPLE_MS = 10_000;
/** cri-ledger's DEFAULT_PULL_CONCURRENCY: layers fetched at once. */
const REGISTRY_GET_CONCURRENCY = 3;

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} wants a positive integer`);
  return value;
}

/** One runtime's pull figures: seconds per measured pull, and what each removal left behind. */
interface PullRecord {
  seconds: number[];
  removalLeftovers: Leftovers[];
}

/**
 * A cold pull, timed, then RemoveImage and the wait until containerd holds nothing of the
 * image (not timed). Returns the seconds, or undefined when the pull failed.
 */
async function coldPull(
  runtime: Runtime,
  pushed: PushedImage,
  cold: () => Promise<Leftovers | undefined>,
  record: PullRecord,
): Promise<number | undefined> {
  throwIfInterrupted();
  const started = performance.now();
  let seconds: number | undefined;
  try {
    const { imageRef } = await call<{ imageRef: string }>(
      runtime,
      'pullImage',
      { image: { image: pushed.reference } },
      PULL_TIMEOUT_MS,
    );
    seconds = (performance.now() - started) / 1000;
    if (imageRef !== pushed.image.config.digest)
      runtime.errors.push(`PullImage: image ref ${imageRef}, expected ${pushed.image.config.digest}`);
  } catch (error) {
    runtime.errors.push(`PullImage: ${describeError(error)}`);
  }
  try {
    await call(runtime, 'removeImage', { image: { image: pushed.reference } });
  } catch (error) {
    runtime.errors.push(`RemoveImage: ${describeError(error)}`);
  }
  const left = await cold();
  if (left) record.removalLeftovers.push(left);
  return seconds;
}

/**
 * `calls` ImageStatus calls of the present image per runtime after a few untimed ones;
 * latencies in ms by runtime. The runtimes take turns call by call (which goes first
 * alternates): the client's own warm-up, and anything else the machine does meanwhile,
 * falls on both alike.
 */
async function imageStatusPhase(
  runtimes: Runtime[],
  pushed: PushedImage,
  calls: number,
): Promise<{ warmup: Map<string, number[]>; measured: Map<string, number[]> }> {
  const warmup = new Map(runtimes.map((r): [string, number[]] => [r.key, []]));
  const measured = new Map(runtimes.map((r): [string, number[]] => [r.key, []]));
  for (let i = 0; i < STATUS_WARMUP_CALLS + calls; i++) {
    for (const runtime of i % 2 === 0 ? runtimes : [...runtimes].reverse()) {
      throwIfInterrupted();
      const started = performance.now();
      const { image } = await call<{ image: { id: string } | null }>(runtime, 'imageStatus', {
        image: { image: pushed.reference },
      });
      (i >= STATUS_WARMUP_CALLS ? measured : warmup).get(runtime.key)!.push(performance.now() - started);
      if (image?.id !== pushed.image.config.digest)
        throw new Error(`${runtime.key} ImageStatus: ${JSON.stringify(image)} is not the pushed image`);
    }
  }
  return { warmup, measured };
}

/** GETs one blob from the registry with node:http and hashes it as it arrives; resolves with its digest. */
function getBlob(registry: TestRegistry, digest: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${registry.url}/v2/${REPOSITORY}/blobs/${digest}`, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET ${digest}: ${res.statusCode}`));
      const hash = createHash('sha256');
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('end', () => resolve(`sha256:${hash.digest('hex')}`));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/**
 * The floor under any pull through Node: the layers fetched and hashed in this process,
 * as many at a time as cri-ledger fetches, nothing written. Seconds per round.
 */
async function registryGetPhase(registry: TestRegistry, pushed: PushedImage, rounds: number): Promise<number[]> {
  const seconds: number[] = [];
  for (let round = 0; round < rounds; round++) {
    throwIfInterrupted();
    const started = performance.now();
    const queue = pushed.image.layers.map((l) => l.digest);
    await Promise.all(
      Array.from({ length: REGISTRY_GET_CONCURRENCY }, async () => {
        for (let digest = queue.shift(); digest !== undefined; digest = queue.shift()) {
          if ((await getBlob(registry, digest)) !== digest) throw new Error(`GET ${digest}: the bytes do not match`);
        }
      }),
    );
    seconds.push((performance.now() - started) / 1000);
  }
  return seconds;
}

/** One cri-ledger pull as its events tell it, times from the log's `at`. */
interface LedgerPull {
  /** ImagePulled's durationMs. */
  durationMs: number;
  /** ImagePullStarted to the last layer's final progress event (done = total): the fetches. */
  fetchMs: number;
  /** That last fetch to ImagePulled: unpacking what was not unpacked yet, then the documents and the record. */
  afterFetchMs: number;
  /** ImagePulled's per-layer times: fetch plus unpack of each layer. */
  layersMs: number[];
}

interface StoredEvent {
  type: string;
  at: string;
  data: { durationMs?: number; layers?: Array<{ ms: number }>; done?: number; total?: number };
}

/** cri-ledger's pulls in log order, from `cri-ledger events --json` over its socket. */
async function ledgerPulls(socket: string): Promise<LedgerPull[]> {
  const types = ['ImagePullStarted', 'ImagePullProgress', 'ImagePulled'].flatMap((t) => ['--type', t]);
  const result = await runCli(['events', '--socket', socket, ...types, '--json']);
  if (result.code !== 0) throw new Error(`cri-ledger events failed (${result.code}): ${result.stderr}`);
  const pulls: LedgerPull[] = [];
  let started = NaN;
  let fetched = NaN;
  for (const line of result.stdout.split('\n').filter(Boolean)) {
    const event = JSON.parse(line) as StoredEvent;
    const at = Date.parse(event.at);
    if (event.type === 'ImagePullStarted') [started, fetched] = [at, at];
    else if (event.type === 'ImagePullProgress' && event.data.done === event.data.total)
      fetched = Math.max(fetched, at);
    else if (event.type === 'ImagePulled') {
      pulls.push({
        durationMs: Math.round(event.data.durationMs ?? NaN),
        fetchMs: fetched - started,
        afterFetchMs: at - fetched,
        layersMs: (event.data.layers ?? []).map((l) => Math.round(l.ms)),
      });
    }
  }
  return pulls;
}

const sorted = (values: number[]): number[] => [...values].sort((a, b) => a - b);

function printComparison(rows: Row[], runtimes: Runtime[], imageMb: number): void {
  const v = (metric: string): number => rows.find((r) => r.metric === metric)?.value ?? NaN;
  const f = (n: number, digits: number): string => (Number.isNaN(n) ? '-' : n.toFixed(digits));
  const header = [
    'runtime',
    'pull p50 s',
    'pull p95 s',
    'pull max s',
    'MB/s at p50',
    'status p50 ms',
    'status p95 ms',
    'errors',
  ];
  const lines = [header];
  for (const { key } of runtimes) {
    lines.push([
      key,
      f(v(`${key}_pull_p50_s`), 2),
      f(v(`${key}_pull_p95_s`), 2),
      f(v(`${key}_pull_max_s`), 2),
      f(imageMb / v(`${key}_pull_p50_s`), 1),
      f(v(`${key}_image_status_p50_ms`), 2),
      f(v(`${key}_image_status_p95_ms`), 2),
      String(v(`${key}_errors`)),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  console.log(`\nimages: cold PullImage of ${imageMb.toFixed(1)} MB, ImageStatus of a present image`);
  for (const l of lines)
    console.log(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

export async function runImagesBench(args: string[]): Promise<void> {
  const iterations = flag(args, 'iterations', DEFAULT_ITERATIONS);
  const warmup = flag(args, 'warmup', DEFAULT_WARMUP_ITERATIONS);
  const statusCalls = flag(args, 'status-calls', DEFAULT_STATUS_CALLS);
  const layerMb = flag(args, 'layer-mb', DEFAULT_LAYER_MB);

  const releaseInterrupts = catchInterrupts();
  const load: number[] = [loadavg()[0]!];
  const sampler = setInterval(() => load.push(loadavg()[0]!), LOAD_SAMPLE_MS).unref();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-images-'));
  const hostsDir = join(work, 'certs.d');
  let registry: TestRegistry | undefined;
  let containerd: PrivateContainerd | undefined;
  let serve: ServeProcess | undefined;
  const runtimes: Runtime[] = [];
  const apis: ContainerdApi[] = [];
  let pushed: PushedImage | undefined;
  try {
    registry = await startRegistry({ auth: 'none' });
    await writeHostsDir(hostsDir, registry);
    const built = performance.now();
    pushed = await pushRandomImage(registry, { repository: REPOSITORY, tag: TAG, layerBytes: layerMb * 1024 * 1024 });
    console.error(
      `pushed ${pushed.reference}: ${DEFAULT_RANDOM_LAYERS} layers, ${(pushed.layerBytes / 1e6).toFixed(1)} MB compressed, in ${((performance.now() - built) / 1000).toFixed(1)} s`,
    );

    containerd = await startContainerdWithCri({ registryConfigPath: hostsDir });
    await mkdir(join(work, 'cni'));
    serve = await startServe({
      warmUp: true,
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
        '--registry-config-path',
        hostsDir,
      ],
    });
    runtimes.push(
      connect('cri_ledger', serve.socket, imageServiceV1),
      connect('containerd_cri', containerd.address, imageServiceV1),
    );
    for (const namespace of [LEDGER_NAMESPACE, CONTAINERD_CRI_NAMESPACE])
      apis.push(connectContainerd({ address: containerd.address, namespace }));
    const image = pushed;
    const root = containerd.root;
    const cold = (): Promise<Leftovers | undefined> => ensureCold(root, apis, image.digests);
    if (await cold()) throw new Error('containerd held content of the image before the first pull');

    const records = new Map(runtimes.map((r): [string, PullRecord] => [r.key, { seconds: [], removalLeftovers: [] }]));
    const orderOf = (i: number): Runtime[] => (i % 2 === 0 ? runtimes : [...runtimes].reverse());
    // Warm-up: the first pull loads code paths, connections and the registry's page cache; not measured.
    for (let i = 0; i < warmup; i++)
      for (const runtime of orderOf(i)) await coldPull(runtime, image, cold, { seconds: [], removalLeftovers: [] });
    for (const runtime of runtimes)
      if (runtime.errors.length > 0)
        throw new Error(`${runtime.key} failed the warm-up:\n${runtime.errors.join('\n')}`);
    for (let i = 0; i < iterations; i++) {
      for (const runtime of orderOf(i)) {
        const record = records.get(runtime.key)!;
        const seconds = await coldPull(runtime, image, cold, record);
        if (seconds !== undefined) record.seconds.push(seconds);
        console.error(
          `pull ${i + 1}/${iterations} ${runtime.key}: ${seconds === undefined ? 'failed' : `${seconds.toFixed(2)} s`}`,
        );
      }
    }

    // ImageStatus of a present image: one pull per runtime, untimed, the pulls' writes
    // flushed to disk (so the kernel's write-back does not land in the calls), then the calls.
    for (const runtime of runtimes)
      await call(runtime, 'pullImage', { image: { image: image.reference } }, PULL_TIMEOUT_MS);
    execFileSync('sync');
    const status = await imageStatusPhase(runtimes, image, statusCalls);
    const ledgerPullTimes = await ledgerPulls(serve.socket);
    const registryGets = sorted(await registryGetPhase(registry, image, iterations));

    const rows: Row[] = [];
    for (const runtime of runtimes) {
      const pulls = sorted(records.get(runtime.key)!.seconds);
      const statuses = sorted(status.measured.get(runtime.key)!);
      rows.push(
        { metric: `${runtime.key}_pull_p50_s`, value: percentile(pulls, 50), unit: 's' },
        { metric: `${runtime.key}_pull_p95_s`, value: percentile(pulls, 95), unit: 's' },
        { metric: `${runtime.key}_pull_max_s`, value: pulls.at(-1) ?? NaN, unit: 's' },
        { metric: `${runtime.key}_image_status_p50_ms`, value: percentile(statuses, 50), unit: 'ms' },
        { metric: `${runtime.key}_image_status_p95_ms`, value: percentile(statuses, 95), unit: 'ms' },
        {
          metric: `${runtime.key}_image_status_warmup_p50_ms`,
          value: percentile(sorted(status.warmup.get(runtime.key)!), 50),
          unit: 'ms',
        },
        { metric: `${runtime.key}_errors`, value: runtime.errors.length, unit: 'errors' },
      );
    }
    rows.push({ metric: 'registry_get_layers_p50_s', value: percentile(registryGets, 50), unit: 's' });
    const v = (metric: string): number => rows.find((r) => r.metric === metric)?.value ?? NaN;
    rows.push(
      { metric: 'pull_100mb_s', value: v('cri_ledger_pull_p50_s'), unit: 's' },
      {
        metric: 'pull_100mb_ratio_vs_containerd',
        value: v('cri_ledger_pull_p50_s') / v('containerd_cri_pull_p50_s'),
        unit: 'x',
        target: '<= 1.0',
      },
      { metric: 'image_status_p50_ms', value: v('cri_ledger_image_status_p50_ms'), unit: 'ms', target: '<= 1' },
    );
    load.push(loadavg()[0]!);
    report('images', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      image_layers: DEFAULT_RANDOM_LAYERS,
      image_layer_bytes_compressed: image.image.layers.map((l) => l.size),
      image_bytes_compressed: image.layerBytes,
      pull_iterations: iterations,
      warmup_iterations: warmup,
      image_status_calls: statusCalls,
      image_status_warmup_calls: STATUS_WARMUP_CALLS,
      order:
        'interleaved pull by pull, the first runtime alternating every iteration (cri_ledger first in iteration 0); each pull cold (no blob of the image on disk, no snapshot in either namespace)',
      registry_get_layers_seconds: registryGets.map((s) => Math.round(s * 1000) / 1000),
      pull_seconds: Object.fromEntries(
        [...records].map(([key, r]) => [key, r.seconds.map((s) => Math.round(s * 1000) / 1000)]),
      ),
      removals_that_left_content: Object.fromEntries([...records].map(([key, r]) => [key, r.removalLeftovers])),
      cri_ledger_pulls_from_events: {
        note: `in log order: ${warmup} warm-up, ${iterations} measured, 1 for ImageStatus; ms from the events' times`,
        pulls: ledgerPullTimes,
      },
      load_average_1m: { min: Math.min(...load), max: Math.max(...load), samples: load.length },
      errors: Object.fromEntries(runtimes.map((r) => [r.key, r.errors.slice(0, 20)])),
    });
    printComparison(rows, runtimes, image.layerBytes / 1e6);
    console.log(
      '\ncri-ledger pulls from its events (ms): total, fetches, after the last fetch; per layer fetch + unpack',
    );
    for (const [i, p] of ledgerPullTimes.entries())
      console.log(
        `  ${i + 1}: ${p.durationMs}  fetch ${p.fetchMs}  after ${p.afterFetchMs}  layers ${p.layersMs.join(', ')}`,
      );
    for (const runtime of runtimes) for (const e of runtime.errors.slice(0, 10)) console.error(`${runtime.key}: ${e}`);
  } finally {
    clearInterval(sampler);
    if (pushed)
      for (const runtime of runtimes)
        await call(runtime, 'removeImage', { image: { image: pushed.reference } }).catch(() => undefined);
    for (const runtime of runtimes) runtime.client.close();
    for (const api of apis) api.close();
    await serve?.stop('SIGTERM').catch(() => undefined);
    await containerd?.stop().catch((error: unknown) => console.error(`containerd cleanup: ${String(error)}`));
    await registry?.stop().catch((error: unknown) => console.error(`registry cleanup: ${String(error)}`));
    for (const mount of mountsUnder(work)) execFileSync('umount', ['-l', mount]);
    await rm(work, { recursive: true, force: true });
    releaseInterrupts();
  }
}
