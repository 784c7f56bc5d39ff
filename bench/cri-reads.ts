import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../src/adapters/cri/cri-definition.js';
import { call, describeError, throwIfInterrupted, type Runtime } from './support/cri-runtime.js';
import { percentile, type Row } from './table.js';

/*
 * The cheap reads kubelet makes all the time, Version and ContainerStatus, on every
 * client under test in turn, call by call, the order rotating each round so all see the
 * same machine. The clients: cri-ledger as grpc-js calls it (`:authority` localhost, the
 * socket hands the native connection to nghttp2), cri-ledger as Go clients call it (the
 * socket path as `:authority`, served through the authority filter), and containerd's CRI.
 */

export const DEFAULT_READ_CALLS = 2_000;
/** Unmeasured calls first, so neither process is measured while V8 still compiles its path. */
export const READ_PHASE_WARMUP_CALLS = 1_000;

export interface ReadTarget {
  key: string;
  runtime: Pick<Runtime, 'client' | 'errors'>;
  containerId: string;
}

export interface ReadLatencies {
  version: number[];
  containerStatus: number[];
}

/** A second client on cri-ledger's socket that sends the socket path as `:authority`, as kubelet's Go client does. */
export function pathAuthorityClient(socket: string): ReadTarget['runtime'] {
  const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'CriService');
  const client = new Constructor(`unix://${socket}`, credentials.createInsecure(), {
    'grpc.default_authority': socket,
  }) as Runtime['client'];
  return { client, errors: [] };
}

/**
 * Measures each target's Version and ContainerStatus. A target whose first call fails is
 * reported and left out (a build from before the authority fix refuses the path client).
 */
export async function readsPhase(targets: ReadTarget[], calls: number): Promise<Map<string, ReadLatencies>> {
  const live: ReadTarget[] = [];
  for (const target of targets) {
    try {
      await call(target.runtime as Runtime, 'version', { version: 'v1' }, 5_000);
      live.push(target);
    } catch (error) {
      console.error(`${target.key}: left out of the reads, its first Version failed: ${describeError(error)}`);
    }
  }
  const results = new Map(live.map((t): [string, ReadLatencies] => [t.key, { version: [], containerStatus: [] }]));
  for (let i = 0; i < READ_PHASE_WARMUP_CALLS + calls; i++) {
    throwIfInterrupted();
    for (let k = 0; k < live.length; k++) {
      const target = live[(i + k) % live.length]!;
      const runtime = target.runtime as Runtime;
      const into = results.get(target.key)!;
      let started = performance.now();
      await call(runtime, 'version', { version: 'v1' });
      const version = performance.now() - started;
      started = performance.now();
      await call(runtime, 'containerStatus', { containerId: target.containerId, verbose: false });
      const status = performance.now() - started;
      if (i < READ_PHASE_WARMUP_CALLS) continue;
      into.version.push(version);
      into.containerStatus.push(status);
    }
  }
  return results;
}

export function readRows(results: Map<string, ReadLatencies>): Row[] {
  const rows: Row[] = [];
  for (const [key, { version, containerStatus }] of results) {
    for (const [rpc, values] of [
      ['version', version],
      ['container_status', containerStatus],
    ] as const) {
      const sorted = [...values].sort((a, b) => a - b);
      rows.push({ metric: `${key}_${rpc}_reads_p50_ms`, value: percentile(sorted, 50), unit: 'ms' });
      rows.push({ metric: `${key}_${rpc}_reads_p90_ms`, value: percentile(sorted, 90), unit: 'ms' });
    }
  }
  return rows;
}
