import {
  Channel,
  credentials,
  InterceptingCall,
  loadPackageDefinition,
  type Client,
  type GrpcObject,
  type Interceptor,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import { MAX_MESSAGE_BYTES } from '../grpc/socket-server.js';
import { loadServices, PROTO_DIR } from '../grpc/proto.js';
import { CONTAINERD_PROTO_SET } from '../grpc/proto-sets.js';
import { Http2UnaryTransport } from './unary-http2.js';

/** The header containerd reads to pick the namespace a call works in. */
export const NAMESPACE_HEADER = 'containerd-namespace';

/** The containerd services the adapters call, by the key they have on ContainerdApi. */
export const CONTAINERD_SERVICES = {
  version: 'containerd.services.version.v1.Version',
  namespaces: 'containerd.services.namespaces.v1.Namespaces',
  containers: 'containerd.services.containers.v1.Containers',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  diff: 'containerd.services.diff.v1.Diff',
  tasks: 'containerd.services.tasks.v1.Tasks',
  leases: 'containerd.services.leases.v1.Leases',
  events: 'containerd.services.events.v1.Events',
} as const;

export type ContainerdServiceName = keyof typeof CONTAINERD_SERVICES;

/**
 * How messages look on the JavaScript side. google/protobuf/{any,empty,timestamp,
 * field_mask}.proto need no files: protobufjs bundles them and resolves those imports
 * before it looks in includeDirs.
 *
 * - keepCase true: fields keep the proto's snake_case names (`snapshot_key`). The bundled
 *   well-known types are not renamed by keepCase false (Any would stay `type_url` while
 *   everything else became camelCase, and a camelCase `typeUrl` is silently dropped on
 *   encode), so one convention, the proto's own, holds everywhere.
 * - longs String: every int64/uint64 (blob sizes, offsets, Timestamp.seconds, usage)
 *   arrives as a decimal string, so nothing above 2^53 is rounded. Requests may pass
 *   numbers or strings.
 * - enums String: `status: 'RUNNING'`, `kind: 'ACTIVE'`.
 * - defaults true: unset scalars, maps and lists arrive as '', 0, {}, []; an unset
 *   message field arrives as null.
 * - bytes stay Buffers (Any.value, content data).
 */
export const CONTAINERD_LOADER_OPTIONS: Options = {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let loaded: GrpcObject | undefined;

/** The containerd package tree (`containerd.services...`), loaded once per process. */
export function loadContainerdProtos(): GrpcObject {
  loaded ??= loadPackageDefinition(loadServices(CONTAINERD_PROTO_SET, CONTAINERD_LOADER_OPTIONS));
  return loaded;
}

function serviceConstructor(fullName: string): ServiceClientConstructor {
  let node: unknown = loadContainerdProtos();
  for (const part of fullName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function') throw new Error(`service ${fullName} is not in proto/containerd`);
  return node as ServiceClientConstructor;
}

/** A grpc-js client of one containerd service; methods and fields are named as in the proto. */
export type ContainerdClient = Client & { [method: string]: unknown };

/** Clients of every containerd service, sharing one connection to one containerd. */
export type ContainerdApi = { readonly [S in ContainerdServiceName]: ContainerdClient } & {
  /** The containerd namespace every call carries. */
  readonly namespace: string;
  /** The socket path. */
  readonly address: string;
  /** Closes the connection; calls in flight fail with CANCELLED. */
  close(): void;
};

export interface ContainerdConnectOptions {
  /** containerd's gRPC socket path (`/run/containerd/containerd.sock`), or a `unix://` target. */
  address: string;
  /** Sent as the containerd-namespace header on every call, e.g. `cri-ledger`. */
  namespace: string;
}

/** Adds the namespace header to every call a client makes, streaming ones included. */
function namespaceInterceptor(namespace: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(NAMESPACE_HEADER, namespace);
        next(metadata, listener);
      },
    });
}

/** The first and the longest wait between attempts to reach containerd again. */
export const DEFAULT_RECONNECT_BACKOFF_MS = 250;
export const DEFAULT_MAX_RECONNECT_BACKOFF_MS = 1_000;

/**
 * Clients for containerd at `address`, all working in `namespace`. The connection is made
 * by the first call, so this never fails for a containerd that is down; calls do.
 */
export function connectContainerd({ address, namespace }: ContainerdConnectOptions): ContainerdApi {
  if (!namespace) throw new TypeError('connectContainerd: namespace must not be empty');
  const target = address.startsWith('unix:') ? address : `unix://${address}`;
  const channel = new Channel(target, credentials.createInsecure(), {
    // containerd's own limit is 16 MiB each way, like kubelet's.
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    // A local socket: try again at least every second while containerd is away. With
    // grpc-js's default backoff (1 s, growing 1.6x up to 120 s) the service saw a
    // containerd back after a 3 s outage 1 to 3 s late, and the wait keeps growing with
    // the outage: calls fail fast meanwhile, they do not make it reconnect.
    'grpc.initial_reconnect_backoff_ms': DEFAULT_RECONNECT_BACKOFF_MS,
    'grpc.max_reconnect_backoff_ms': DEFAULT_MAX_RECONNECT_BACKOFF_MS,
    // Nothing reads channelz here; it costs every call counters, timestamps and trace entries.
    'grpc.enable_channelz': 0,
  });
  const interceptors = [namespaceInterceptor(namespace)];
  const unary = new Http2UnaryTransport(
    address.replace(/^unix:(\/\/)?/, ''),
    { [NAMESPACE_HEADER]: namespace },
    MAX_MESSAGE_BYTES,
  );
  const clients = {} as Record<ContainerdServiceName, ContainerdClient>;
  for (const [key, fullName] of Object.entries(CONTAINERD_SERVICES) as Array<[ContainerdServiceName, string]>) {
    const Ctor = serviceConstructor(fullName);
    // channelOverride makes the target and credentials arguments unused.
    clients[key] = new Ctor(target, credentials.createInsecure(), {
      channelOverride: channel,
      interceptors,
    }) as ContainerdClient;
    bindUnaryTransport(clients[key], unary);
  }
  const close = (): void => {
    unary.close();
    channel.close();
  };
  return { ...clients, namespace, address, close };
}

const unaryTransports = new WeakMap<Client, Http2UnaryTransport>();

/** Unary calls of `client` go over `transport` (unaryCall), its streaming calls over grpc-js. */
function bindUnaryTransport(client: Client, transport: Http2UnaryTransport): void {
  unaryTransports.set(client, transport);
}

/** The transport connectContainerd gave `client`'s unary calls; none for a stand-in client. */
export function unaryTransportOf(client: Client): Http2UnaryTransport | undefined {
  return unaryTransports.get(client);
}
