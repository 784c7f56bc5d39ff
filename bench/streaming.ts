import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSpdyClient } from '../test/support/spdy-go-client.js';
import { startServe, type ServeProcess } from '../test/support/cli.js';
import { mountsUnder, type PrivateContainerd } from '../test/support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../test/support/oci-image.js';
import { CONTAINERD_CRI_NAMESPACE, startContainerdWithCri } from './support/containerd-with-cri.js';
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
import { percentile, report, type Row } from './table.js';

/*
 * Exec streaming, cri-ledger beside containerd's CRI on one containerd, both driven by
 * the same SPDY client (spdystream, as kubectl and crictl): the round trip of `echo`
 * (the CRI Exec call, the upgrade, the process, the exit status) and the throughput of
 * 100 MB through exec stdout. The runtimes take turns, the first one alternating.
 */

const LEDGER_NAMESPACE = 'cri-ledger';
const ROUND_TRIPS = 40;
const COPIES = 4;
const COPY_BYTES = 100 * 1024 * 1024;

async function execOnce(runtime: Runtime, containerId: string, cmd: string[]): Promise<{ ms: number; bytes: number }> {
  const started = performance.now();
  const { url } = await call<{ url: string }>(runtime, 'exec', { containerId, cmd, stdout: true, stderr: true });
  const result = await runSpdyClient(['-url', url, '-mode', 'exec']);
  if (result.code !== 0)
    throw new Error(`${runtime.key}: exec ${cmd.join(' ')} ended ${result.code}: ${result.stderr}`);
  return { ms: performance.now() - started, bytes: result.stdout.length };
}

export async function runStreamingBench(_args: string[]): Promise<void> {
  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-streaming-'));
  const logRoot = join(work, 'pod-logs');
  let containerd: PrivateContainerd | undefined;
  let serve: ServeProcess | undefined;
  const targets: Array<{ runtime: Runtime; containerId: string; pod: string }> = [];
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
      root: join(work, 'ledger'),
      socket: join(work, 'cri-ledger.sock'),
      args: [
        '--containerd-address',
        containerd.address,
        '--cni-conf-dir',
        join(work, 'cni'),
        '--restrict-oom-score-adj',
        'true',
      ],
    });
    for (const runtime of [connect('cri_ledger', serve.socket), connect('containerd_cri', containerd.address)]) {
      const pod = `stream-${runtime.key.replace('_', '-')}`;
      const { podSandboxId } = await call<{ podSandboxId: string }>(runtime, 'runPodSandbox', {
        config: podConfig(pod, logRoot),
      });
      runtime.pods.add(podSandboxId);
      await makeContainerLogDir(logRoot, pod);
      const { containerId } = await call<{ containerId: string }>(runtime, 'createContainer', {
        podSandboxId,
        sandboxConfig: podConfig(pod, logRoot),
        config: containerConfig(pod),
      });
      await call(runtime, 'startContainer', { containerId });
      targets.push({ runtime, containerId, pod: podSandboxId });
    }
    const trips = new Map(targets.map((t) => [t.runtime.key, [] as number[]]));
    const copies = new Map(targets.map((t) => [t.runtime.key, [] as number[]]));
    for (let i = 0; i < 5 + ROUND_TRIPS; i++) {
      for (const t of i % 2 === 0 ? targets : [...targets].reverse()) {
        throwIfInterrupted();
        const { ms } = await execOnce(t.runtime, t.containerId, ['echo', 'hi']);
        if (i >= 5) trips.get(t.runtime.key)!.push(ms);
      }
    }
    for (let i = 0; i < COPIES; i++) {
      for (const t of i % 2 === 0 ? targets : [...targets].reverse()) {
        const { ms, bytes } = await execOnce(t.runtime, t.containerId, ['head', '-c', String(COPY_BYTES), '/dev/zero']);
        if (bytes !== COPY_BYTES) throw new Error(`${t.runtime.key}: copied ${bytes} of ${COPY_BYTES} bytes`);
        copies.get(t.runtime.key)!.push(COPY_BYTES / 1024 / 1024 / (ms / 1000));
      }
    }
    const rows: Row[] = [];
    const p50 = (xs: number[]): number =>
      percentile(
        [...xs].sort((a, b) => a - b),
        50,
      );
    for (const t of targets) {
      rows.push({
        metric: `${t.runtime.key}_exec_echo_round_trip_p50_ms`,
        value: p50(trips.get(t.runtime.key)!),
        unit: 'ms',
      });
      rows.push({
        metric: `${t.runtime.key}_exec_stdout_100mb_mib_per_s`,
        value: p50(copies.get(t.runtime.key)!),
        unit: 'MiB/s',
      });
    }
    rows.push({
      metric: 'exec_round_trip_ratio_vs_containerd',
      value: p50(trips.get('cri_ledger')!) / p50(trips.get('containerd_cri')!),
      unit: 'x',
      target: '<= 1.0',
    });
    rows.push({
      metric: 'exec_stdout_throughput_ratio_vs_containerd',
      value: p50(copies.get('cri_ledger')!) / p50(copies.get('containerd_cri')!),
      unit: 'x',
      target: '>= 1.0',
    });
    report('streaming', rows, {
      measured_at: new Date().toISOString(),
      node: process.version,
      round_trips: ROUND_TRIPS,
      copies: COPIES,
    });
  } finally {
    for (const t of targets) {
      await call(t.runtime, 'stopPodSandbox', { podSandboxId: t.pod }).catch(() => undefined);
      await call(t.runtime, 'removePodSandbox', { podSandboxId: t.pod }).catch(() => undefined);
      t.runtime.client.close();
    }
    await serve?.stop('SIGTERM').catch(() => undefined);
    await containerd?.stop().catch(() => undefined);
    for (const mount of mountsUnder(work)) execFileSync('umount', ['-l', mount]);
    await rm(work, { recursive: true, force: true });
    releaseInterrupts();
  }
}
