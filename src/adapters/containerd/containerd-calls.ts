import {
  Metadata,
  status as Status,
  type ClientReadableStream,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { CriLedgerError } from '../../domain/errors.js';
import { type ContainerdClient, unaryTransportOf } from './containerd-api.js';

/** How long a containerd call may take unless the caller says otherwise. */
export const DEFAULT_CONTAINERD_CALL_TIMEOUT_MS = 10_000;

/**
 * The header that puts what a call creates (snapshots, content, ingests) under a lease.
 * Without one, containerd's garbage collector may remove a fresh snapshot before any
 * container record references it.
 */
export const LEASE_HEADER = 'containerd-lease';

export interface ContainerdCallOptions {
  /** Deadline from now; Infinity for none (tasks.Wait, events.Subscribe). */
  timeoutMs?: number;
  /** Cancels the call; it then fails with CANCELLED. */
  signal?: AbortSignal;
  /** A lease id (leases.Create) to hold what the call creates. */
  lease?: string;
}

/** A containerd call that ended with a non-OK status; `code` is the gRPC status code. */
export class ContainerdCallError extends CriLedgerError {
  constructor(
    /** `Service.Method`, e.g. `Containers.Create`. */
    readonly method: string,
    readonly code: Status,
    readonly details: string,
    options: { cause: unknown },
  ) {
    super(`containerd ${method}: ${Status[code] ?? code}: ${details}`, options);
  }
}

/** True when `error` is a containerd (or any gRPC) error with status `code`. */
export function hasStatus(error: unknown, code: Status): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/**
 * The error of a call that failed. containerd sees the deadline too (grpc-timeout): when
 * it ends the call first, some of its services answer UNKNOWN with the context's error
 * (Events.Subscribe: `subscription error: context deadline exceeded`) where the client's
 * own timer would have said DEADLINE_EXCEEDED. Past the deadline, that is what it is.
 */
function callError(
  client: ContainerdClient,
  name: string,
  error: ServiceError,
  deadline: number | undefined,
): ContainerdCallError {
  const service = (client.constructor as ServiceClientConstructor).serviceName;
  const details = error.details ?? error.message;
  const code =
    error.code === Status.UNKNOWN &&
    deadline !== undefined &&
    Date.now() >= deadline &&
    details.includes('context deadline exceeded')
      ? Status.DEADLINE_EXCEEDED
      : (error.code ?? Status.UNKNOWN);
  return new ContainerdCallError(`${service}.${name}`, code, details, { cause: error });
}

function callOptions(options: ContainerdCallOptions): { deadline?: number } {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONTAINERD_CALL_TIMEOUT_MS;
  return Number.isFinite(timeoutMs) ? { deadline: Date.now() + timeoutMs } : {};
}

function metadata(options: ContainerdCallOptions): Metadata {
  const md = new Metadata();
  if (options.lease) md.set(LEASE_HEADER, options.lease);
  return md;
}

function method(client: ContainerdClient, name: string): Function {
  const fn = client[name];
  if (typeof fn !== 'function') throw new TypeError(`containerd client has no method ${name}`);
  return fn;
}

/**
 * One unary call, e.g. `unaryCall(api.containers, 'Get', { id })`, the method named as in
 * the proto. Resolves with the response as proto-loader decodes it; rejects with a
 * ContainerdCallError. A client from connectContainerd sends it over its node:http2
 * transport (unary-http2.ts); any other client (a test's stand-in) is called as grpc-js's.
 */
export function unaryCall<Response = Record<string, unknown>>(
  client: ContainerdClient,
  name: string,
  request: object,
  options: ContainerdCallOptions = {},
): Promise<Response> {
  const transport = unaryTransportOf(client);
  if (transport) {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const timing = callOptions(options);
    const definition = (client.constructor as ServiceClientConstructor).service[name];
    if (!definition) return Promise.reject(new TypeError(`containerd client has no method ${name}`));
    return transport
      .call(definition, request, {
        ...timing,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.lease ? { headers: { [LEASE_HEADER]: options.lease } } : {}),
      })
      .then(
        (response) => response as Response,
        (error: ServiceError) => Promise.reject(callError(client, name, error, timing.deadline)),
      );
  }
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(options.signal.reason);
    let call: { cancel(): void } | undefined;
    const cancel = (): void => call?.cancel();
    const timing = callOptions(options);
    call = method(client, name).call(
      client,
      request,
      metadata(options),
      timing,
      (error: ServiceError | null, response: Response) => {
        options.signal?.removeEventListener('abort', cancel);
        if (error) reject(callError(client, name, error, timing.deadline));
        else resolve(response);
      },
    ) as { cancel(): void };
    options.signal?.addEventListener('abort', cancel, { once: true });
  });
}

/**
 * A server-streaming call read to its end, e.g. `collectStream(api.snapshots, 'List',
 * { snapshotter })`. Meant for listings; the deadline covers the whole stream.
 */
export function collectStream<Message = Record<string, unknown>>(
  client: ContainerdClient,
  name: string,
  request: object,
  options: ContainerdCallOptions = {},
): Promise<Message[]> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(options.signal.reason);
    const timing = callOptions(options);
    const stream = method(client, name).call(
      client,
      request,
      metadata(options),
      timing,
    ) as ClientReadableStream<Message>;
    const cancel = (): void => stream.cancel();
    options.signal?.addEventListener('abort', cancel, { once: true });
    const messages: Message[] = [];
    stream.on('data', (message: Message) => messages.push(message));
    stream.on('error', (error: ServiceError) => {
      options.signal?.removeEventListener('abort', cancel);
      reject(callError(client, name, error, timing.deadline));
    });
    stream.on('end', () => {
      options.signal?.removeEventListener('abort', cancel);
      resolve(messages);
    });
  });
}
