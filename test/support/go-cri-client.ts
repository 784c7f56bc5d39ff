import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  Metadata,
  status as Status,
  type MethodDefinition,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  imageServiceV1,
  imageServiceV1alpha2,
  runtimeServiceV1,
  runtimeServiceV1alpha2,
} from '../../src/adapters/cri/cri-definition.js';

/*
 * A CRI client on grpc-go, as kubelet (before 1.30), crictl and critest are: the
 * program built from test/support/go/cri-go-client by scripts/build-go-client.sh moves
 * bytes over the socket, and this wrapper encodes each request and decodes each
 * response with the project's own grpc-js service definitions (the same serializers the
 * server uses), so a call reads like the harness's grpc-js one. Should this process die
 * without close(), the Go process sees its stdin close and exits once its calls end.
 */

/** Where scripts/build-go-client.sh puts the binary, from dist/test/support/. */
export const GO_CRI_CLIENT_BINARY = fileURLToPath(new URL('../../go/cri-go-client', import.meta.url));
export const DEFAULT_GO_CALL_TIMEOUT_MS = 10_000;
const CLOSE_GRACE_MS = 2_000;

const SERVICES = {
  'runtime.v1.RuntimeService': runtimeServiceV1,
  'runtime.v1.ImageService': imageServiceV1,
  'runtime.v1alpha2.RuntimeService': runtimeServiceV1alpha2,
  'runtime.v1alpha2.ImageService': imageServiceV1alpha2,
} satisfies Record<string, ServiceDefinition>;
export type CriServiceName = keyof typeof SERVICES;

interface Reply {
  id: number;
  code: number;
  message: string;
  response?: string;
  elapsedUs: number;
}

export interface GoCriClient {
  /** `service` is a full CRI service name, `method` its RPC (`'RunPodSandbox'`); rejects with a ServiceError. */
  call<T = Record<string, unknown>>(
    service: CriServiceName,
    method: string,
    request: object,
    timeoutMs?: number,
  ): Promise<T>;
  /** A call and its time inside the Go process (grpc-go's Invoke to its answer), for benchmarks. */
  timed<T = Record<string, unknown>>(
    service: CriServiceName,
    method: string,
    request: object,
    timeoutMs?: number,
  ): Promise<{ response: T; elapsedMs: number }>;
  /** runtime.v1.RuntimeService. */
  runtime<T = Record<string, unknown>>(method: string, request: object, timeoutMs?: number): Promise<T>;
  /** runtime.v1.ImageService. */
  image<T = Record<string, unknown>>(method: string, request: object, timeoutMs?: number): Promise<T>;
  /** Closes stdin and waits for the process to exit (SIGKILL after a grace period). Safe to call twice. */
  close(): Promise<void>;
}

/** A grpc-js-shaped error, so tests assert `code` and `details` alike for both clients. */
function serviceError(code: number, details: string): ServiceError {
  const name = Status[code] ?? `code ${code}`;
  return Object.assign(new Error(`${code} ${name}: ${details}`), { code, details, metadata: new Metadata() });
}

/** Starts the Go client for `socket`; `authority` overrides the :authority it sends (the socket path by default). */
export function startGoCriClient(socket: string, o: { authority?: string } = {}): GoCriClient {
  if (!existsSync(GO_CRI_CLIENT_BINARY)) {
    throw new Error(
      `${GO_CRI_CLIENT_BINARY} is missing: build it with scripts/build-go-client.sh (scripts/test.sh does)`,
    );
  }
  const args = ['-socket', socket, ...(o.authority !== undefined ? ['-authority', o.authority] : [])];
  const child: ChildProcessWithoutNullStreams = spawn(GO_CRI_CLIENT_BINARY, args, { stdio: 'pipe' });
  const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let stderr = '';
  let exited: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    const done = (why: string) => {
      exited ??= new Error(`cri-go-client ${why}${stderr ? `:\n${stderr}` : ''}`);
      for (const p of pending.values()) p.reject(exited);
      pending.clear();
      resolve();
    };
    child.on('exit', (code, signal) => done(`exited (${signal ?? code})`));
    child.on('error', (error) => done(`failed: ${error.message}`));
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // An EPIPE on stdin means the process is gone; 'exit' reports that.
  child.stdin.on('error', () => undefined);
  createInterface({ input: child.stdout }).on('line', (line) => {
    const reply = JSON.parse(line) as Reply;
    pending.get(reply.id)?.resolve(reply);
    pending.delete(reply.id);
  });

  const timed = async <T>(
    service: CriServiceName,
    method: string,
    request: object,
    timeoutMs = DEFAULT_GO_CALL_TIMEOUT_MS,
  ): Promise<{ response: T; elapsedMs: number }> => {
    const methods: ServiceDefinition = SERVICES[service];
    const definition = Object.hasOwn(methods, method) ? (methods[method] as MethodDefinition<object, T>) : undefined;
    if (!definition) throw new Error(`${service} has no method ${method}`);
    if (exited) throw exited;
    const id = nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      const body = definition.requestSerialize(request).toString('base64');
      child.stdin.write(`${JSON.stringify({ id, method: definition.path, request: body, timeoutMs })}\n`);
    });
    if (reply.code !== Status.OK) throw serviceError(reply.code, reply.message);
    return {
      response: definition.responseDeserialize(Buffer.from(reply.response ?? '', 'base64')),
      elapsedMs: reply.elapsedUs / 1000,
    };
  };
  const call = async <T>(service: CriServiceName, method: string, request: object, timeoutMs?: number): Promise<T> =>
    (await timed<T>(service, method, request, timeoutMs)).response;

  return {
    call,
    timed,
    runtime: (method, request, timeoutMs) => call('runtime.v1.RuntimeService', method, request, timeoutMs),
    image: (method, request, timeoutMs) => call('runtime.v1.ImageService', method, request, timeoutMs),
    async close() {
      if (!exited) child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), CLOSE_GRACE_MS);
      await exit;
      clearTimeout(timer);
    },
  };
}
