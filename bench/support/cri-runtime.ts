import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  credentials,
  makeGenericClientConstructor,
  type Client,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';

/*
 * What every phase of the `cri` bench shares: one grpc-js `runtime.v1` client per runtime
 * under test, the pod and container configs both runtimes get, and the interrupt flag
 * that makes the workload stop at its next call so the bench's cleanup still runs.
 */

export const DEFAULT_CALL_TIMEOUT_MS = 60_000;
export const HEX_ID = /^[0-9a-f]{64}$/;

type Callback = (error: ServiceError | null, response: Record<string, unknown>) => void;
type Call = (request: object, options: { deadline: number }, callback: Callback) => void;

/** One CRI endpoint under test, with the errors it produced and the pods it still holds. */
export interface Runtime {
  key: 'cri_ledger' | 'containerd_cri';
  client: Client & Record<string, Call>;
  pods: Set<string>;
  errors: string[];
}

let interrupted: NodeJS.Signals | undefined;
const interrupt = (signal: NodeJS.Signals): void => {
  interrupted = signal;
};

/**
 * Ctrl-C or SIGTERM no longer kills the process: it sets a flag that `throwIfInterrupted`
 * turns into an error at the workload's next step, so the bench's `finally` cleans up
 * (containers, pods, mounts, temp dirs; containerd has its own watchdog).
 */
export function catchInterrupts(): () => void {
  process.on('SIGINT', interrupt).on('SIGTERM', interrupt);
  return () => process.off('SIGINT', interrupt).off('SIGTERM', interrupt);
}

export function throwIfInterrupted(): void {
  if (interrupted) throw new Error(`interrupted by ${interrupted}: cleaning up`);
}

/** A client of `service` (the CRI RuntimeService unless told) on `socket`. */
export function connect(key: Runtime['key'], socket: string, service: ServiceDefinition = runtimeServiceV1): Runtime {
  const Constructor = makeGenericClientConstructor(service, 'CriService');
  const client = new Constructor(`unix://${socket}`, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 << 20,
    'grpc.max_send_message_length': 16 << 20,
  }) as Client & Record<string, Call>;
  return { key, client, pods: new Set(), errors: [] };
}

export function call<T = Record<string, unknown>>(
  runtime: Runtime,
  method: string,
  request: object,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<T> {
  return new Promise((resolve, reject) =>
    runtime.client[method]!.call(runtime.client, request, { deadline: Date.now() + timeoutMs }, (error, response) =>
      error ? reject(error) : resolve(response as T),
    ),
  );
}

/** Runs one call and returns its latency in ms, or records the failure and returns undefined. */
export async function timed(
  runtime: Runtime,
  what: string,
  method: string,
  request: object,
): Promise<number | undefined> {
  throwIfInterrupted();
  const started = performance.now();
  try {
    await call(runtime, method, request);
    return performance.now() - started;
  } catch (error) {
    runtime.errors.push(`${what}: ${describeError(error)}`);
    return undefined;
  }
}

export function describeError(error: unknown): string {
  const e = error as Partial<ServiceError>;
  return e.code !== undefined ? `code ${e.code}: ${e.details ?? e.message}` : String(error);
}

/**
 * The pod both runtimes get: host network, pid per container, ipc per pod. No hostname,
 * as kubelet sends for host-network pods: a host-network pod shares the host's UTS
 * namespace, and runc refuses to set a hostname there (containerd's CRI passes it on).
 */
export function podConfig(name: string, logRoot: string): object {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'bench', attempt: 0 },
    logDirectory: join(logRoot, name),
    labels: { bench: 'cri', pod: name },
    annotations: { 'bench.cri-ledger.io/run': 'cri' },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
}

/**
 * Makes `<logRoot>/<pod>/<name>`, the directory of containerConfig's log path, as kubelet
 * does before CreateContainer: StartContainer opens the log file and neither runtime
 * creates its directory. Not part of any measured call.
 */
export async function makeContainerLogDir(logRoot: string, pod: string, name = 'app'): Promise<void> {
  await mkdir(join(logRoot, pod, name), { recursive: true });
}

/** busybox `sleep 3600`: when started, it runs until killed (PID 1 ignores SIGTERM). */
export function containerConfig(pod: string, name = 'app'): object {
  return {
    metadata: { name, attempt: 0 },
    image: { image: 'busybox' },
    command: ['sleep', '3600'],
    envs: [
      { key: 'MODE', value: 'bench' },
      { key: 'POD', value: pod },
    ],
    labels: { tier: 'bench', pod },
    logPath: `${name}/0.log`,
  };
}
