import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSpdyClient } from '../test/support/spdy-go-client.js';
import { until } from '../test/support/until.js';
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
import { type SideBySide, startSideBySide, stopSideBySide } from './support/side-by-side.js';
import { percentile, report, type Row } from './table.js';

/*
 * Exec streaming, cri-ledger beside containerd's CRI on one containerd, both driven by
 * the same SPDY client (spdystream, as kubectl and crictl): the round trip of `echo`
 * (the CRI Exec call, the upgrade, the process, the exit status) and the throughput of
 * 100 MB through exec stdout, and of 100 MB each way through a port forward to an echo
 * server in the pod. The runtimes take turns, the first one alternating.
 */

const ROUND_TRIPS = 40;
const COPIES = 4;
const COPY_BYTES = 100 * 1024 * 1024;
/** The echo servers' ports (host network): this one for the first runtime, the next for the second. */
const ECHO_PORT = 15_301;

async function execOnce(runtime: Runtime, containerId: string, cmd: string[]): Promise<{ ms: number; bytes: number }> {
  const started = performance.now();
  const { url } = await call<{ url: string }>(runtime, 'exec', { containerId, cmd, stdout: true, stderr: true });
  const result = await runSpdyClient(['-url', url, '-mode', 'exec']);
  if (result.code !== 0)
    throw new Error(`${runtime.key}: exec ${cmd.join(' ')} ended ${result.code}: ${result.stderr}`);
  return { ms: performance.now() - started, bytes: result.stdout.length };
}

/**
 * One port-forward connection, one request: `bytes` sent to the pod's echo server in
 * 32 KiB writes (as client-go copies from the local connection) and read back. The time
 * includes the CRI PortForward call and the client's start; the rate counts each way once.
 */
async function forwardOnce(
  t: { runtime: Runtime; pod: string; port: number },
  bytes: number,
): Promise<{ ok: boolean; ms: number; detail: string }> {
  const started = performance.now();
  const { url } = await call<{ url: string }>(t.runtime, 'portForward', { podSandboxId: t.pod, port: [t.port] });
  const result = await runSpdyClient([
    '-url',
    url,
    '-mode',
    'portforward',
    '-port',
    String(t.port),
    '-size',
    String(bytes),
  ]);
  return {
    ok: result.code === 0,
    ms: performance.now() - started,
    detail: `${result.stdout.toString()}${result.stderr}`,
  };
}

export async function runStreamingBench(_args: string[]): Promise<void> {
  const releaseInterrupts = catchInterrupts();
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-bench-streaming-'));
  const logRoot = join(work, 'pod-logs');
  const side: SideBySide = { work, logRoot, cgroupParents: [] };
  const targets: Array<{ runtime: Runtime; containerId: string; pod: string; port: number }> = [];
  try {
    const { containerd, serve } = await startSideBySide(side);
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
      // An echo server for the port forward: host network, so each runtime its own port.
      const port = ECHO_PORT + targets.length;
      await makeContainerLogDir(logRoot, pod, 'echo');
      const echo = await call<{ containerId: string }>(runtime, 'createContainer', {
        podSandboxId,
        sandboxConfig: podConfig(pod, logRoot),
        config: { ...containerConfig(pod, 'echo'), command: ['nc', '-ll', '-p', String(port), '-e', 'cat'] },
      });
      await call(runtime, 'startContainer', { containerId: echo.containerId });
      targets.push({ runtime, containerId, pod: podSandboxId, port });
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
    const forwards = new Map(targets.map((t) => [t.runtime.key, [] as number[]]));
    for (const t of targets) await until(`${t.runtime.key}'s echo server`, async () => (await forwardOnce(t, 1024)).ok);
    for (let i = 0; i < COPIES; i++) {
      for (const t of i % 2 === 0 ? targets : [...targets].reverse()) {
        throwIfInterrupted();
        const { ok, ms, detail } = await forwardOnce(t, COPY_BYTES);
        if (!ok) throw new Error(`${t.runtime.key}: port forward of ${COPY_BYTES} bytes: ${detail}`);
        forwards.get(t.runtime.key)!.push(COPY_BYTES / 1024 / 1024 / (ms / 1000));
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
    for (const t of targets)
      rows.push({
        metric: `${t.runtime.key}_port_forward_echo_100mb_mib_per_s`,
        value: p50(forwards.get(t.runtime.key)!),
        unit: 'MiB/s',
      });
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
    rows.push({
      metric: 'port_forward_throughput_ratio_vs_containerd',
      value: p50(forwards.get('cri_ledger')!) / p50(forwards.get('containerd_cri')!),
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
    await stopSideBySide(side);
    releaseInterrupts();
  }
}
