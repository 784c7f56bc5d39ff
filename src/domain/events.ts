import { z } from 'zod';
import { CorruptRecordError, InvalidArgumentError, UnknownEventError } from './errors.js';
import { RESOURCE_ID } from './ids.js';

/*
 * Every state change of cri-ledger is one of these events. The log stores the envelope
 * as JSON, exactly as NATS consumers receive it. Each type has a schema per version `v`;
 * a record whose type or version is not listed here is refused with UnknownEventError,
 * never skipped. To change a payload, add version 2 beside version 1 and an upcaster.
 */

const TIME = z.iso.datetime({ offset: true });
const LABELS = z.record(z.string(), z.string());

/** The container's name was reserved for a freshly generated id; CreateContainer began. */
export const NameReservedV1 = z.object({
  containerId: RESOURCE_ID,
  sandboxId: RESOURCE_ID,
  /** The full CRI name, `<name>_<pod>_<namespace>_<uid>_<attempt>`, the key of the name index. */
  name: z.string().min(1),
  metadata: z.object({ name: z.string().min(1), attempt: z.number().int().nonnegative() }),
  /** sha256 of the canonical request: a retry with the same digest is the same request. */
  requestDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  image: z.string(),
});

/** The OCI spec was built; it is carried whole so an incident can see exactly what ran. */
export const SpecGeneratedV1 = z.object({
  spec: z.record(z.string(), z.unknown()),
  specDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  runtimeHandler: z.string(),
  imageRef: z.string(),
});

/** The rootfs snapshot exists under the key fixed by the container id. */
export const SnapshotPreparedV1 = z.object({
  snapshotter: z.string().min(1),
  key: z.string().min(1),
  parent: z.string(),
});

/** containerd holds the container; it is now visible to ListContainers. */
/** A CRI mount as ContainerStatus reports it. */
export const CriMount = z.object({
  containerPath: z.string(),
  hostPath: z.string(),
  readonly: z.boolean(),
  selinuxRelabel: z.boolean(),
  propagation: z.string(),
});

/** The container's Linux resources, as the CRI names them (ContainerStatus, UpdateContainerResources). */
export const CriResources = z.object({
  cpuPeriod: z.string(),
  cpuQuota: z.string(),
  cpuShares: z.string(),
  memoryLimitInBytes: z.string(),
  oomScoreAdj: z.string(),
  cpusetCpus: z.string(),
  cpusetMems: z.string(),
});

export const ContainerCreatedV1 = z.object({
  createdAt: TIME,
  imageRef: z.string(),
  logPath: z.string(),
  labels: LABELS,
  annotations: LABELS,
  /** Later fields are optional: records written before them stay valid. */
  stdin: z.boolean().optional(),
  tty: z.boolean().optional(),
  /** The signal StopContainer sends first: the image's StopSignal, else SIGTERM. */
  stopSignal: z.string().optional(),
  mounts: z.array(CriMount).optional(),
  resources: CriResources.optional(),
});

/**
 * v2 adds `stdinOnce`: Attach closes the container's stdin after the first attached
 * client detaches when it is set, and only the log can say so after a restart. A v1
 * record carries none (read as false). Still optional in v2: the data the saga keeps in
 * containerd's record may come from a build before it (startup recovery rolls it forward).
 */
export const ContainerCreatedV2 = ContainerCreatedV1.extend({ stdinOnce: z.boolean().optional() });

/**
 * CreateContainer made a mount's missing host path, as containerd and CRI-O do: one
 * record per mount, in the container's stream, so an audit shows which host directories
 * a pod made. Compensation leaves them (docs/decisions.md), so a failed creation keeps
 * the record too. Not a terminal event.
 */
export const HostPathCreatedV1 = z.object({
  /** The request field that named it (`config.mounts[0].host_path`). */
  field: z.string().min(1),
  /** The host path, as the spec mounts it. */
  path: z.string().min(1),
  /** Each directory made, outermost first: the missing parents too. */
  created: z.array(z.string().min(1)).min(1),
  /** Their mode, octal (`0755`). */
  mode: z.string().regex(/^0[0-7]{3}$/),
});

/** One undo done while compensating, and how it went. */
export const UndoResult = z.object({
  step: z.string().min(1),
  ok: z.boolean(),
  error: z.string().optional(),
  durationMs: z.number().nonnegative().optional(),
});

/** Why an undelivered result was removed by the service itself (on ContainerRemoved / SandboxRemoved). */
export const ResultDiscarded = z.object({
  /** `superseded`: a request with another digest came for the name; `unclaimed`: nobody claimed it in time. */
  reason: z.enum(['superseded', 'unclaimed']),
  message: z.string(),
  /** The digest of the request that replaced it (superseded only). */
  supersededBy: z.string().optional(),
  undone: z.array(UndoResult),
});

/** A step failed: which step, the error, and each undo done (newest first). Terminal. */
export const CompensatedV1 = z.object({
  operation: z.string().min(1),
  failedStep: z.string().min(1),
  error: z.object({ message: z.string(), code: z.string().optional() }),
  undone: z.array(UndoResult),
  /** The name that compensation released, if one had been reserved. */
  name: z.string().optional(),
});

/** The sandbox name `<name>_<namespace>_<uid>_<attempt>` was reserved; RunPodSandbox began. */
export const SandboxReservedV1 = z.object({
  sandboxId: RESOURCE_ID,
  name: z.string().min(1),
  metadata: z.object({
    name: z.string().min(1),
    uid: z.string().min(1),
    namespace: z.string().min(1),
    attempt: z.number().int().nonnegative(),
  }),
  requestDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  runtimeHandler: z.string(),
  hostNetwork: z.boolean(),
  /** POD, CONTAINER, NODE or TARGET for each of network, pid and ipc, as the request gave them. */
  namespaceOptions: z.object({ network: z.string(), pid: z.string(), ipc: z.string() }).optional(),
  labels: LABELS,
  annotations: LABELS,
});

/** A port the pod publishes on the host (CRI PortMapping), protocol lower-cased. */
export const PodPortMapping = z.object({
  protocol: z.enum(['tcp', 'udp', 'sctp']),
  containerPort: z.number().int(),
  hostPort: z.number().int(),
  /** '' when the request names no host IP. */
  hostIp: z.string(),
});

/**
 * v2 adds the pod's port mappings: CNI DEL must hand portmap the same `portMappings` as
 * ADD did, or it leaves the pod's DNAT rules behind, and a stop after a restart has
 * only the log to take them from. v1 records (written before) carry none.
 */
export const SandboxReservedV2 = SandboxReservedV1.extend({ portMappings: z.array(PodPortMapping) });

/** The pause task runs and the network is set up. Terminal for RunPodSandbox. */
export const SandboxReadyV1 = z.object({
  createdAt: TIME,
  pid: z.number().int().nonnegative(),
  ip: z.string(),
  additionalIps: z.array(z.string()),
  netnsPath: z.string(),
});

/** The pause task is stopped and the network torn down. */
export const SandboxStoppedV1 = z.object({ stoppedAt: TIME });

/** The sandbox and its name are gone. */
export const SandboxRemovedV1 = z.object({
  name: z.string().min(1),
  removedAt: TIME,
  /** Set when the service removed an undelivered result itself (added later in v1: older records stay valid). */
  discarded: ResultDiscarded.optional(),
});

/** The container's task started. */
export const ContainerStartedV1 = z.object({ pid: z.number().int().nonnegative(), startedAt: TIME });

/** The container's task exited (from containerd's task events). */
export const ContainerExitedV1 = z.object({
  exitCode: z.number().int(),
  finishedAt: TIME,
  /** `Completed`, `Error`, `OOMKilled`, or why the start failed. */
  reason: z.string(),
  message: z.string(),
});

/** StopContainer ran: the signal sent and whether the timeout forced a SIGKILL. */
export const ContainerStoppedV1 = z.object({
  signal: z.string(),
  timeoutMs: z.number().int().nonnegative(),
  killed: z.boolean(),
  stoppedAt: TIME,
});

/**
 * A retry of a request that already created this container or sandbox (same name, same
 * request digest) was answered with its id: nothing else was done.
 */
export const RetryServedV1 = z.object({ requestDigest: z.string(), servedAt: TIME });

/** ExecSync ran a command in the container: the audit record other runtimes do not keep. */
export const ExecRanV1 = z.object({
  execId: z.string().min(1),
  cmd: z.array(z.string()),
  /** -1 when it timed out and was killed. */
  exitCode: z.number().int(),
  timedOut: z.boolean(),
  durationMs: z.number().nonnegative(),
  stdoutBytes: z.number().int().nonnegative(),
  stderrBytes: z.number().int().nonnegative(),
  truncated: z.boolean(),
});

/** UpdateContainerResources applied new limits to the running task. */
export const ContainerResourcesUpdatedV1 = z.object({ resources: CriResources });

/** One layer of a pull: how big, how long it took, and whether it was there already. */
export const PulledLayer = z.object({
  digest: z.string(),
  size: z.number().int().nonnegative(),
  ms: z.number().nonnegative(),
  skipped: z.boolean(),
});

/** A pull began (stream `image-<name>`, the normalized reference). */
export const ImagePullStartedV1 = z.object({ reference: z.string().min(1), origin: z.string() });

/** Bytes of one layer fetched so far; written at a bounded rate while a pull runs. */
export const ImagePullProgressV1 = z.object({
  layer: z.string(),
  done: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
});

/** A pull (or an import) finished: the image id is its config digest. */
export const ImagePulledV1 = z.object({
  reference: z.string().min(1),
  origin: z.string(),
  imageId: z.string(),
  /** What the image record points at (an index, a manifest list or a manifest). */
  targetDigest: z.string(),
  size: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
  layers: z.array(PulledLayer),
});

/** A pull failed; nothing of it is left (its lease is gone). */
export const ImagePullFailedV1 = z.object({
  reference: z.string().min(1),
  reason: z.string(),
  code: z.string().optional(),
  durationMs: z.number().nonnegative(),
});

/** The image record named `reference` was deleted. */
export const ImageRemovedV1 = z.object({ reference: z.string().min(1), imageId: z.string() });

/**
 * Startup reconciliation with containerd (stream `node-<node>`): the objects carrying
 * cri-ledger's labels that the log did not know, removed, and the log's containers and
 * sandboxes whose containerd record was gone.
 */
export const RuntimeReconciledV1 = z.object({
  orphansRemoved: z.array(
    z.object({ kind: z.string(), id: z.string(), ok: z.boolean(), error: z.string().optional() }),
  ),
  missing: z.array(z.object({ kind: z.string(), id: z.string(), state: z.string() })),
});

/** kubelet told the runtime its pod CIDR (UpdateRuntimeConfig); stream `node-<node>`. */
export const PodCidrUpdatedV1 = z.object({ podCidr: z.string() });

/*
 * The stall watchdog (src/commands/saga.ts). Its own block: other issue-6 events go
 * elsewhere in this file.
 */

/**
 * A saga step was still running when its caller's deadline passed. The step keeps
 * running (the result is kept for the caller's retry); this records, once per saga,
 * which step overran and how long it had run by then. Not terminal.
 */
export const OperationStalledV1 = z.object({
  operation: z.string().min(1),
  /** The step that was running when the deadline passed, as failpoints name it. */
  step: z.string().min(1),
  /** How long that step had been running when the deadline passed (0: it began after it). */
  elapsedMs: z.number().nonnegative(),
  /** The caller's deadline. */
  deadline: TIME,
});

/** The container and its side effects are gone; its name is released. */
export const ContainerRemovedV1 = z.object({
  name: z.string().min(1),
  removedAt: TIME,
  /** Set when the service removed an undelivered result itself (added later in v1: older records stay valid). */
  discarded: ResultDiscarded.optional(),
});

/*
 * Delivery of a CreateContainer or RunPodSandbox result, and startup recovery's
 * decisions (docs/recovery.md, "Retries and undelivered results").
 */

/**
 * The container or sandbox exists, but its id reached no caller: the call was cancelled
 * or its deadline passed before the answer went out, or startup recovery rolled the saga
 * forward. A retry with the same request digest claims it (RetryServed); one with another
 * digest replaces it; left unclaimed past the unclaimed-result timeout, it is removed.
 */
export const ResultUndeliveredV1 = z.object({
  name: z.string().min(1),
  requestDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  /** `cancelled`, `deadline` (the caller's deadline passed), or `recovery` (rolled forward at startup). */
  reason: z.enum(['cancelled', 'deadline', 'recovery']),
  /** When the caller gave up, or when recovery ran. */
  gaveUpAt: TIME,
  /** The caller's deadline, when it set one: the unclaimed time counts from it. */
  callerDeadline: TIME.optional(),
});

/** Startup recovery's decision for a saga left in flight, and why; written in the batch that carries it out. */
export const RecoveryDecidedV1 = z.object({
  operation: z.string().min(1),
  decision: z.enum(['rollForward', 'compensate']),
  reason: z.string(),
  /** The last step the log had recorded. */
  lastStep: z.string(),
  /** What was checked against containerd (CreateContainer only). */
  evidence: z
    .object({
      containerRecord: z.boolean(),
      specDigestMatches: z.boolean(),
      snapshot: z.boolean(),
      createdData: z.boolean(),
    })
    .optional(),
});

/*
 * Streaming sessions (issue 14, docs/streaming.md): Exec and Attach in the container's
 * stream, PortForward in the sandbox's. Each pair shares a session id; the envelope's
 * correlationId is the one of the CRI Exec, Attach or PortForward call that asked for
 * the session's URL. The session's bytes and the process's environment are never
 * recorded: only who ran what, when, how it ended and how many bytes went each way.
 */

/** The three kinds of streaming session. */
export const SESSION_KINDS = ['exec', 'attach', 'portforward'] as const;
export type SessionKind = (typeof SESSION_KINDS)[number];

/** How a session ended (the streaming contracts' `SessionEnd`). */
export const SESSION_ENDS = [
  'exited',
  'client-gone',
  'idle-timeout',
  'container-exited',
  'shutdown',
  'service-restarted',
  'error',
] as const;
export type SessionEndReason = (typeof SESSION_ENDS)[number];

const SESSION_ID = z.string().min(1).max(128);
const TRANSPORT = z.enum(['spdy', 'websocket']);
const BYTES = z.number().int().nonnegative();
const PORT = z.number().int().min(1).max(65_535);

/** Which of the session's standard streams the client asked for. */
export const SessionStreams = z.object({ stdin: z.boolean(), stdout: z.boolean(), stderr: z.boolean() });

/** A client attached to the container's own stdio (CRI Attach). */
export const AttachStartedV1 = z.object({
  sessionId: SESSION_ID,
  tty: z.boolean(),
  streams: SessionStreams,
  transport: TRANSPORT,
  /** The negotiated protocol, e.g. `v5.channel.k8s.io`. */
  protocol: z.string(),
  startedAt: TIME,
  /** The API server's audit id of the request behind the session, when the CRI call carried one. */
  auditRequestId: z.string().optional(),
});

/** A command began in the container (CRI Exec). `cmd` is the argv as asked; the env is never recorded. */
export const ExecStartedV1 = z.object({
  sessionId: SESSION_ID,
  cmd: z.array(z.string()).min(1),
  tty: z.boolean(),
  streams: SessionStreams,
  transport: TRANSPORT,
  protocol: z.string(),
  startedAt: TIME,
  auditRequestId: z.string().optional(),
});

/** An Exec or Attach session ended. `bytesIn` came from the client (stdin), `bytesOut` went to it. */
export const ExecEndedV1 = z.object({
  sessionId: SESSION_ID,
  reason: z.enum(SESSION_ENDS),
  /** The process's exit code (Exec), or the container's when it exited during an Attach. */
  exitCode: z.number().int().optional(),
  /** Absent when nobody counted them (a session ended by startup recovery). */
  bytesIn: BYTES.optional(),
  bytesOut: BYTES.optional(),
  /** What went wrong (reason `error`), or what recovery could not do. */
  error: z.string().optional(),
  endedAt: TIME,
  durationMs: z.number().nonnegative(),
});
export const AttachEndedV1 = ExecEndedV1;

/** A port-forward connection to the pod opened; `ports` are the ones the request allowed ([]: any the client asks for). */
export const PortForwardStartedV1 = z.object({
  sessionId: SESSION_ID,
  ports: z.array(PORT),
  transport: TRANSPORT,
  protocol: z.string(),
  startedAt: TIME,
});

/** A port-forward connection closed: what went through each port it forwarded to. */
export const PortForwardEndedV1 = z.object({
  sessionId: SESSION_ID,
  reason: z.enum(SESSION_ENDS),
  ports: z.array(
    z.object({
      port: PORT,
      /** Forwarding requests the client made to this port, and how many of them failed. */
      connections: BYTES,
      errors: BYTES,
      bytesIn: BYTES,
      bytesOut: BYTES,
    }),
  ),
  bytesIn: BYTES.optional(),
  bytesOut: BYTES.optional(),
  error: z.string().optional(),
  endedAt: TIME,
  durationMs: z.number().nonnegative(),
});

/** The events that start a streaming session, and those that end one. */
export const SESSION_STARTED_TYPE = {
  exec: 'ExecStarted',
  attach: 'AttachStarted',
  portforward: 'PortForwardStarted',
} as const satisfies Record<SessionKind, string>;
export const SESSION_ENDED_TYPE = {
  exec: 'ExecEnded',
  attach: 'AttachEnded',
  portforward: 'PortForwardEnded',
} as const satisfies Record<SessionKind, string>;

/** Each event type, its schemas by version. The last entry is the one written. */
export const EVENT_SCHEMAS = {
  NameReserved: { 1: NameReservedV1 },
  SpecGenerated: { 1: SpecGeneratedV1 },
  SnapshotPrepared: { 1: SnapshotPreparedV1 },
  ContainerCreated: { 1: ContainerCreatedV1, 2: ContainerCreatedV2 },
  HostPathCreated: { 1: HostPathCreatedV1 },
  Compensated: { 1: CompensatedV1 },
  SandboxReserved: { 1: SandboxReservedV1, 2: SandboxReservedV2 },
  SandboxReady: { 1: SandboxReadyV1 },
  SandboxStopped: { 1: SandboxStoppedV1 },
  SandboxRemoved: { 1: SandboxRemovedV1 },
  ContainerStarted: { 1: ContainerStartedV1 },
  ContainerExited: { 1: ContainerExitedV1 },
  ContainerStopped: { 1: ContainerStoppedV1 },
  ContainerRemoved: { 1: ContainerRemovedV1 },
  ExecRan: { 1: ExecRanV1 },
  RetryServed: { 1: RetryServedV1 },
  ContainerResourcesUpdated: { 1: ContainerResourcesUpdatedV1 },
  ImagePullStarted: { 1: ImagePullStartedV1 },
  ImagePullProgress: { 1: ImagePullProgressV1 },
  ImagePulled: { 1: ImagePulledV1 },
  ImagePullFailed: { 1: ImagePullFailedV1 },
  ImageRemoved: { 1: ImageRemovedV1 },
  PodCidrUpdated: { 1: PodCidrUpdatedV1 },
  RuntimeReconciled: { 1: RuntimeReconciledV1 },
  OperationStalled: { 1: OperationStalledV1 },
  // Retries and recovery (issue 6)
  ResultUndelivered: { 1: ResultUndeliveredV1 },
  RecoveryDecided: { 1: RecoveryDecidedV1 },
  // Streaming sessions (issue 14)
  ExecStarted: { 1: ExecStartedV1 },
  ExecEnded: { 1: ExecEndedV1 },
  AttachStarted: { 1: AttachStartedV1 },
  AttachEnded: { 1: AttachEndedV1 },
  PortForwardStarted: { 1: PortForwardStartedV1 },
  PortForwardEnded: { 1: PortForwardEndedV1 },
} as const satisfies Record<string, Record<number, z.ZodType>>;

export type EventType = keyof typeof EVENT_SCHEMAS;
export const EVENT_TYPES = Object.keys(EVENT_SCHEMAS) as EventType[];

/** The schema version written for each type. */
export const CURRENT_VERSION = {
  NameReserved: 1,
  SpecGenerated: 1,
  SnapshotPrepared: 1,
  ContainerCreated: 2,
  HostPathCreated: 1,
  Compensated: 1,
  SandboxReserved: 2,
  SandboxReady: 1,
  SandboxStopped: 1,
  SandboxRemoved: 1,
  ContainerStarted: 1,
  ContainerExited: 1,
  ContainerStopped: 1,
  ContainerRemoved: 1,
  ExecRan: 1,
  RetryServed: 1,
  ContainerResourcesUpdated: 1,
  ImagePullStarted: 1,
  ImagePullProgress: 1,
  ImagePulled: 1,
  ImagePullFailed: 1,
  ImageRemoved: 1,
  PodCidrUpdated: 1,
  RuntimeReconciled: 1,
  OperationStalled: 1,
  // Retries and recovery (issue 6)
  ResultUndelivered: 1,
  RecoveryDecided: 1,
  // Streaming sessions (issue 14)
  ExecStarted: 1,
  ExecEnded: 1,
  AttachStarted: 1,
  AttachEnded: 1,
  PortForwardStarted: 1,
  PortForwardEnded: 1,
} as const satisfies Record<EventType, number>;

type Schemas<T extends EventType> = (typeof EVENT_SCHEMAS)[T];

/** The payload of each type as commands write it: its current version. */
export type EventData = {
  [T in EventType]: z.infer<Schemas<T>[(typeof CURRENT_VERSION)[T] & keyof Schemas<T>]>;
};

/** The payload of each type as the log may hold it: any of its versions (records are never rewritten). */
export type StoredEventData = {
  [T in EventType]: z.infer<Schemas<T>[keyof Schemas<T>]>;
};

/** Fields every stored event has; the log assigns id, seq, version, at and node. */
export interface EnvelopeFields {
  /** ULID, unique and time-sortable. */
  id: string;
  /** Global position in the log: 1, 2, 3, ... without gaps. */
  seq: number;
  /** `container-<id>`, `sandbox-<id>` or `image-<name>`. */
  stream: string;
  /** Position within the stream: 1, 2, 3, ... */
  version: number;
  /** Schema version of `data`. */
  v: number;
  /** When the log recorded the event (ISO 8601, UTC); never decreases along seq. */
  at: string;
  node: string;
  /** One per CRI request; every event a request caused shares it. */
  correlationId: string;
  /** The event or request that caused this one, if any. */
  causationId: string | null;
  /**
   * The W3C trace id (32 hex digits) of the request that caused it, when tracing is on
   * and the call was traced; absent otherwise (and in events written before tracing).
   */
  traceId?: string;
}

/** A stored event, discriminated by `type`. */
export type LedgerEvent<T extends EventType = EventType> = {
  [K in T]: EnvelopeFields & { type: K; data: StoredEventData[K] };
}[T];

/** An event a command proposes; the log stamps the remaining envelope fields. */
export type NewEvent<T extends EventType = EventType> = {
  [K in T]: { type: K; data: EventData[K]; correlationId: string; causationId?: string | null };
}[T];

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/**
 * Checks the envelope fields of a parsed record and returns the first defect, if any.
 * Hand-written rather than a zod object: it runs once per event on every rebuild, and
 * the envelope never changes shape (payloads, which do, are zod schemas per version).
 */
function envelopeDefect(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object';
  const e = raw as Record<string, unknown>;
  if (typeof e.id !== 'string' || !ULID.test(e.id)) return 'id: must be a ULID';
  if (!isPositiveInt(e.seq)) return 'seq: must be a positive integer';
  if (!isText(e.stream)) return 'stream: must be a non-empty string';
  if (!isPositiveInt(e.version)) return 'version: must be a positive integer';
  if (!isText(e.type)) return 'type: must be a non-empty string';
  if (!isPositiveInt(e.v)) return 'v: must be a positive integer';
  if (typeof e.at !== 'string' || !ISO_UTC.test(e.at) || Number.isNaN(Date.parse(e.at)))
    return 'at: must be an ISO 8601 time';
  if (!isText(e.node)) return 'node: must be a non-empty string';
  if (!isText(e.correlationId)) return 'correlationId: must be a non-empty string';
  if (e.causationId !== null && typeof e.causationId !== 'string') return 'causationId: must be a string or null';
  if (e.traceId !== undefined && (typeof e.traceId !== 'string' || !TRACE_ID.test(e.traceId)))
    return 'traceId: must be 32 hex digits';
  if (!('data' in e)) return 'data: missing';
  return undefined;
}

const TYPE_NAMES = new Map<string, string>(Object.keys(EVENT_SCHEMAS).map((t) => [t, t]));

function schemaFor(type: string, v: number, seq?: number): z.ZodType {
  const versions = (EVENT_SCHEMAS as Record<string, Record<number, z.ZodType>>)[type];
  const schema = versions?.[v];
  if (!schema) throw new UnknownEventError(type, v, seq);
  return schema;
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/**
 * Checks a proposed event against the schema it will be written with and returns it with
 * the parsed data. Throws InvalidArgumentError naming the field, so a command bug never
 * reaches the log.
 */
export function parseNewEvent<E extends NewEvent>(event: E): E {
  const result = schemaFor(event.type, CURRENT_VERSION[event.type]).safeParse(event.data);
  if (!result.success) throw new InvalidArgumentError(`${event.type}.data`, describeIssues(result.error));
  if (typeof event.correlationId !== 'string' || event.correlationId.length === 0) {
    throw new InvalidArgumentError(`${event.type}.correlationId`, 'must not be empty');
  }
  return { ...event, data: result.data };
}

/**
 * Decodes one stored record (the envelope JSON). `expectedSeq`, when given, is the seq
 * the record's key says it has. Unknown types or versions throw UnknownEventError; any
 * other defect throws CorruptRecordError with the seq.
 */
export function decodeEvent(json: string, expectedSeq?: number): LedgerEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw new CorruptRecordError(expectedSeq, 'not valid JSON', { cause });
  }
  const defect = envelopeDefect(raw);
  if (defect !== undefined) throw new CorruptRecordError(expectedSeq, `bad envelope: ${defect}`);
  const e = raw as EnvelopeFields & { type: string; data: unknown };
  if (expectedSeq !== undefined && e.seq !== expectedSeq) {
    throw new CorruptRecordError(expectedSeq, `record says seq ${e.seq}`);
  }
  const data = schemaFor(e.type, e.v, e.seq).safeParse(e.data);
  if (!data.success) {
    throw new CorruptRecordError(e.seq, `${e.type} v${e.v} data: ${describeIssues(data.error)}`);
  }
  // The parsed object is ours alone (fresh from JSON.parse), so the checked data can
  // replace the raw one in place; key order, and so the re-encoded bytes, stay the same.
  e.data = data.data;
  // Share one string per type name: read models keep the last event's type, and a copy
  // per decoded record adds up over a long log.
  e.type = TYPE_NAMES.get(e.type) ?? e.type;
  return e as LedgerEvent;
}

/** The JSON a stored event is written as (and published to NATS as). */
export function encodeEvent(event: LedgerEvent): string {
  return JSON.stringify(event);
}

/** Compile-time exhaustiveness for switches over event types. */
export function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`);
}

/** The events that begin a saga, and those that end one, by stream kind. */
export const SAGA_BEGIN: ReadonlySet<EventType> = new Set(['NameReserved', 'SandboxReserved']);
export const SAGA_END: ReadonlySet<EventType> = new Set(['ContainerCreated', 'SandboxReady', 'Compensated']);
