import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServe, type ServeProcess } from '../test/support/cli.js';
import { mountsUnder, type PrivateContainerd, startContainerd } from '../test/support/containerd.js';
import { freePort } from '../test/support/nats-server.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../test/support/oci-image.js';
import {
  call,
  catchInterrupts,
  connect,
  containerConfig,
  makeContainerLogDir,
  podConfig,
  type Runtime,
  throwIfInterrupted,
} from './support/cri-runtime.js';
import { removeCgroupParents } from '../test/support/cgroups.js';
import { percentile, report, type Row } from './table.js';

/*
 * What metrics and tracing cost CreateContainer: two cri-ledger services on one private
 * containerd (each its own namespace and root), one plain and one with /metrics on and
 * traces sent over OTLP/HTTP to a receiver this bench runs (and /metrics scraped every
 * 2 s meanwhile). CreateContainer then RemoveContainer on each, call pair by call pair,
 * the first one alternating, so both see the same machine; only CreateContainer is timed.
 * Reported: each service's p50 and its ratio to plain, and the median of the per-cycle
 * ratios (each cycle's calls are paired in time).
 */

const DEFAULT_CYCLES = 300;
const WARMUP_CYCLES = 50;

export async function runOverheadBench(args: string[]): Promise<void> {
  const at = args.indexOf('--cycles');
  const cycles = at >= 0 ? Number(args[at + 1]) : DEFAULT_CYCLES;
  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-overhead-'));
  const logRoot = join(work, 'pod-logs');
  let spans = 0;
  const receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      spans += (
        Buffer.concat(chunks)
          .toString()
          .match(/"spanId"/g) ?? []
      ).length;
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  let containerd: PrivateContainerd | undefined;
  const serves: ServeProcess[] = [];
  const runtimes: Array<{ key: string; runtime: Runtime; pod: string; created: number[] }> = [];
  let scraper: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const otlp = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/v1/traces`;
    const metricsPort = await freePort();
    containerd = await startContainerd();
    await mkdir(logRoot);
    const variants = [
      { key: 'plain', env: {} },
      { key: 'metrics', env: { CRI_LEDGER_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` } },
      { key: 'tracing', env: { CRI_LEDGER_TRACING_OTLP_ENDPOINT: otlp } },
      {
        key: 'metrics_and_tracing',
        env: { CRI_LEDGER_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`, CRI_LEDGER_TRACING_OTLP_ENDPOINT: otlp },
      },
    ];
    for (const v of variants) {
      const namespace = `overhead-${v.key.replaceAll('_', '-')}`;
      for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE])
        await importTestImage(containerd.address, namespace, await buildTestImage(spec, join(work, 'images')));
      await mkdir(join(work, v.key, 'cni'), { recursive: true });
      const serve = await startServe({
        warmUp: true,
        root: join(work, v.key),
        socket: join(work, `${v.key}.sock`),
        args: [
          '--containerd-address',
          containerd.address,
          '--containerd-namespace',
          namespace,
          '--cni-conf-dir',
          join(work, v.key, 'cni'),
          '--restrict-oom-score-adj',
          'true',
        ],
        env: { ...process.env, ...v.env },
      });
      serves.push(serve);
      const runtime = connect('cri_ledger', serve.socket);
      const pod = `ovh-${v.key.replaceAll('_', '-')}`;
      const { podSandboxId } = await call<{ podSandboxId: string }>(runtime, 'runPodSandbox', {
        config: podConfig(pod, logRoot),
      });
      runtime.pods.add(podSandboxId);
      runtimes.push({ key: v.key, runtime, pod: podSandboxId, created: [] });
      await makeContainerLogDir(logRoot, pod);
    }
    scraper = setInterval(
      () =>
        void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
          .then((r) => r.text())
          .catch(() => ''),
      2_000,
    );
    for (let i = 0; i < WARMUP_CYCLES + cycles; i++) {
      throwIfInterrupted();
      // The order rotates, so no variant is always first or last in a round.
      for (let k = 0; k < runtimes.length; k++) {
        const r = runtimes[(i + k) % runtimes.length]!;
        const podName = `ovh-${r.key.replaceAll('_', '-')}`;
        const request = {
          podSandboxId: r.pod,
          sandboxConfig: podConfig(podName, logRoot),
          config: containerConfig(podName, `c${i}`),
        };
        const started = performance.now();
        const { containerId } = await call<{ containerId: string }>(r.runtime, 'createContainer', request);
        if (i >= WARMUP_CYCLES) r.created.push(performance.now() - started);
        await call(r.runtime, 'removeContainer', { containerId });
      }
    }
    const metricsText = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const rows: Row[] = [];
    const p50 = new Map<string, number>();
    for (const r of runtimes) {
      const sorted = [...r.created].sort((a, b) => a - b);
      p50.set(r.key, percentile(sorted, 50));
      rows.push({ metric: `${r.key}_create_container_p50_ms`, value: percentile(sorted, 50), unit: 'ms' });
      rows.push({ metric: `${r.key}_create_container_p90_ms`, value: percentile(sorted, 90), unit: 'ms' });
    }
    for (const key of ['metrics', 'tracing', 'metrics_and_tracing'])
      rows.push({
        metric: `create_container_p50_ratio_${key}_vs_plain`,
        value: p50.get(key)! / p50.get('plain')!,
        unit: 'x',
        ...(key === 'metrics_and_tracing' ? { target: '<= 1.03' } : {}),
      });
    // The same ratio cycle by cycle (each cycle's four calls come within tens of ms of
    // each other), then its median: what the machine's drift over the run does to p50
    // alone cancels out here.
    const plain = runtimes.find((r) => r.key === 'plain')!.created;
    for (const r of runtimes.filter((x) => x.key !== 'plain')) {
      const ratios = r.created.map((ms, i) => ms / plain[i]!).sort((a, b) => a - b);
      rows.push({
        metric: `create_container_paired_median_ratio_${r.key}_vs_plain`,
        value: percentile(ratios, 50),
        unit: 'x',
        ...(r.key === 'metrics_and_tracing' ? { target: '<= 1.03' } : {}),
      });
    }
    rows.push({ metric: 'spans_received', value: spans, unit: 'spans' });
    rows.push({
      metric: 'metrics_create_container_counted',
      value: Number(
        /grpc_server_handled_total\{[^}]*grpc_method="CreateContainer"[^}]*grpc_code="OK"\} (\d+)/.exec(
          metricsText,
        )?.[1] ?? NaN,
      ),
      unit: 'calls',
    });
    report('overhead', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      cycles,
      warmup_cycles: WARMUP_CYCLES,
    });
  } finally {
    if (scraper) clearInterval(scraper);
    for (const r of runtimes) {
      await call(r.runtime, 'stopPodSandbox', { podSandboxId: r.pod }).catch(() => undefined);
      await call(r.runtime, 'removePodSandbox', { podSandboxId: r.pod }).catch(() => undefined);
      r.runtime.client.close();
    }
    for (const serve of serves) await serve.stop('SIGTERM').catch(() => undefined);
    await containerd?.stop().catch(() => undefined);
    // runc's cgroup parents for pods without one are named after each namespace.
    await removeCgroupParents(runtimes.map((r) => `overhead-${r.key.replaceAll('_', '-')}`));
    for (const mount of mountsUnder(work)) execFileSync('umount', ['-l', mount]);
    await rm(work, { recursive: true, force: true });
    receiver.close();
    releaseInterrupts();
  }
}
