import type { EventType, LedgerEvent, NewEvent, SessionKind } from '../domain/events.js';

/** `number`: the stream must be at exactly this version (0 = the stream has no events). */
export type ExpectedVersion = number | 'any';

/** Which events `readAll` returns. Ranges are inclusive; every filter narrows. */
export interface ReadAllOptions {
  fromSeq?: number;
  toSeq?: number;
  /** Stop before the first event recorded after this time (ISO 8601). */
  untilTime?: string;
  types?: readonly string[];
  streams?: readonly string[];
}

/** One stored record exactly as it is in the log, before decoding. */
export interface RawRecord {
  seq: number;
  json: string;
}

export interface FollowOptions {
  signal?: AbortSignal;
}

/** Called with each committed batch, in seq order, before its appenders resume. */
export type CommitListener = (events: readonly LedgerEvent[]) => void;

/**
 * The event log, the source of truth. Appends are atomic, durable before they resolve,
 * checked against the stream's expected version, and stamped with a gap-free `seq`.
 */
export interface EventLog {
  /** Appends `events` to `stream` if it is at `expectedVersion`; throws ConcurrencyError otherwise. */
  append(stream: string, expectedVersion: ExpectedVersion, events: readonly NewEvent[]): Promise<LedgerEvent[]>;
  /** Every event of one stream, in version order. */
  readStream(stream: string): Promise<LedgerEvent[]>;
  /** The log in seq order, decoded, streaming in bounded memory. */
  readAll(options?: ReadAllOptions): AsyncIterable<LedgerEvent>;
  /** The stored records in seq order without decoding them (verify, exact copies). */
  readRecords(options?: { fromSeq?: number; toSeq?: number }): AsyncIterable<RawRecord>;
  /** Catch up from `fromSeq`, then stay live: no gap and no duplicate at the switch. */
  follow(fromSeq: number, options?: FollowOptions): AsyncIterable<LedgerEvent>;
  /** `follow`, a stored chunk or a committed batch at a time, for consumers that batch (the relay). */
  followBatches(fromSeq: number, options?: FollowOptions): AsyncIterable<readonly LedgerEvent[]>;
  /** The seq of the last committed event (0 when the log is empty). */
  head(): number;
  /** The version of `stream` (0 when it has no events). */
  streamVersion(stream: string): Promise<number>;
  /** Subscribes to committed batches; returns the unsubscribe function. */
  onCommit(listener: CommitListener): () => void;
  /** A named durable position (the relay's outbox cursor); 0 when never written. */
  readCursor(name: string): Promise<number>;
  writeCursor(name: string, seq: number): Promise<void>;
  close(): Promise<void>;
}

/** A stored snapshot of the projections, as its store lists it. */
export interface StoredSnapshot {
  /** The seq it covers (from its name; the header inside is what counts). */
  seq: number;
  /** Where it is, for messages: a file path. */
  location: string;
}

/**
 * Where snapshots of the projections are kept. Listing and reading never fail the
 * caller for a bad snapshot: `read` throws SnapshotCorruptError, and the loader skips it.
 */
export interface SnapshotStore {
  /** The stored snapshots, newest first. */
  list(): Promise<StoredSnapshot[]>;
  /** The snapshot's text, its checksum verified. */
  read(snapshot: StoredSnapshot): Promise<string>;
}

/** The event types a filter may name; used to reject typos before reading. */
export type KnownEventType = EventType;

/** The parts of an image's config that CreateContainer uses (OCI image config `config`). */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  stopSignal?: string;
  /** Container paths the image declares as volumes. */
  volumes?: string[];
  labels?: Record<string, string>;
}

/** An image found locally, as CreateContainer needs it. */
export interface ResolvedImage {
  /** The image id: its config digest, `sha256:<hex>`. */
  id: string;
  /** The image record's name in containerd (a tag or digest reference). */
  name: string;
  repoTags: string[];
  repoDigests: string[];
  /** Every image record (name) in the store that is this image: what removing it deletes. */
  names: string[];
  /** The chain id of its layers: the parent of a container's rootfs snapshot. */
  chainId: string;
  snapshotter: string;
  config: ImageConfig;
  /** Unpacked size in bytes, as a decimal string (may exceed 2^53). */
  size: string;
}

/** Images in the runtime's store. Creating a container never pulls. */
export interface ImageStore {
  /** By reference (normalized as kubelet does), digest, or id or a unique id prefix; undefined when absent. */
  resolve(ref: string): Promise<ResolvedImage | undefined>;
  /** The image's /etc/passwd and /etc/group, read from a read-only view, never by writing to the image. */
  readUserFiles(image: ResolvedImage): Promise<{ passwd?: string; group?: string }>;
}

/** What the image service needs beyond lookups: every image, and deleting records. */
export interface ImageCatalog extends ImageStore {
  /** Every image, one entry per image id, with all its names. */
  list(): Promise<ResolvedImage[]>;
  /** Forgets what it cached of the image records, after this service changed them. */
  invalidate(): void;
  /** Deletes the image record `name`; `collect` runs containerd's GC before returning. Absent is fine. */
  deleteRecord(name: string, o: { collect: boolean }): Promise<void>;
}

/** One layer's bytes fetched so far, as a pull reports it. */
export interface PullProgress {
  layer: string;
  done: number;
  total: number;
}

/** What a finished pull or import wrote. */
export interface PullResult {
  /** The record name: the normalized reference. */
  name: string;
  /** Where the content came from (the registry URL used, or the archive). */
  origin: string;
  imageId: string;
  targetDigest: string;
  size: number;
  layers: Array<{ digest: string; size: number; ms: number; skipped: boolean }>;
}

/** The CRI AuthConfig, as kubelet sends it with PullImage. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** base64 of `username:password`, as in a docker config.json. */
  auth?: string;
  serverAddress?: string;
  /** A refresh token for the registry's token service (OAuth2 refresh_token grant). */
  identityToken?: string;
  /** A bearer token to send as is. */
  registryToken?: string;
}

/** Fetches an image into the runtime's store (content, snapshots, the record). */
export interface ImagePuller {
  pull(reference: string, o: { auth?: RegistryAuth; onProgress: (p: PullProgress) => void }): Promise<PullResult>;
}

/** A container's rootfs snapshot: keyed by the container id. */
export interface SnapshotRef {
  snapshotter: string;
  key: string;
  parent: string;
}

/** One mount of a snapshot's rootfs, as containerd describes it. */
export interface RootfsMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/** A prepared snapshot and the mounts that make it a rootfs (what a task is created with). */
export interface PreparedSnapshot extends SnapshotRef {
  mounts: RootfsMount[];
}

/** What containerd keeps for a container (the containers service record). */
export interface RuntimeContainer {
  id: string;
  /** The OCI runtime spec, as JSON. */
  spec: Record<string, unknown>;
  image: ResolvedImage;
  snapshot: SnapshotRef;
  /** `io.containerd.runc.v2`, or the sandbox's runtime handler's. */
  runtime: string;
  labels: Record<string, string>;
  /** cri-ledger's metadata extension (JSON), stored beside the spec. */
  extension: Record<string, unknown>;
}

/**
 * The container runtime (containerd). Every method is keyed by the container id, and
 * every removal succeeds when there is nothing to remove, so compensation can run
 * again after a crash without knowing what happened.
 */
export interface ContainerRuntime {
  /**
   * Prepares the rootfs snapshot `key = containerId` on the image's chain, with `labels`.
   * Call it after createContainer: the container record, which names the snapshot, is
   * what keeps containerd's garbage collector off it.
   */
  prepareSnapshot(containerId: string, image: ResolvedImage, labels: Record<string, string>): Promise<PreparedSnapshot>;
  removeSnapshot(containerId: string, snapshotter: string): Promise<void>;
  createContainer(container: RuntimeContainer): Promise<void>;
  deleteContainer(containerId: string): Promise<void>;
  /** Deletes a lease a pull or an image view of an earlier process left; fine when it is gone. */
  deleteLease(leaseId: string): Promise<void>;
  /** Whether containerd holds a container record with this id. */
  hasContainer(containerId: string): Promise<boolean>;
  /** The spec and metadata extension containerd holds for this id; undefined when there is no record. */
  storedContainer(containerId: string): Promise<StoredContainer | undefined>;
  /** The active snapshot `key` in `snapshotter` (its parent); undefined when there is none. */
  statSnapshot(key: string, snapshotter: string): Promise<{ parent: string } | undefined>;
}

/** A container record as containerd holds it: what startup recovery checks before rolling a saga forward. */
export interface StoredContainer {
  spec: Record<string, unknown>;
  /** cri-ledger's metadata extension (see RuntimeContainer.extension); {} when absent. */
  extension: Record<string, unknown>;
  snapshotter: string;
  snapshotKey: string;
}

/**
 * The caller of one CRI request, as the gRPC edge sees it. The command asks it, once its
 * result is ready, whether anyone is still waiting for the answer.
 */
export interface Caller {
  /** The caller's deadline (ISO 8601), when it set one. */
  deadline?: string;
  /** Undefined while the caller waits; once its call was cancelled or its deadline passed, when and why. */
  gaveUp(): { at: string; reason: 'cancelled' | 'deadline' } | undefined;
}

/** A container's directories: `root` (persistent, holds image volumes) and `volatile` (FIFOs). */
export interface ContainerDirs {
  root: string;
  volatile: string;
}

/** The container IO endpoints (FIFO paths) in the volatile dir. */
export interface ContainerIo {
  stdin?: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** The container's files on the host, keyed by its id; removals are idempotent. */
export interface ContainerFiles {
  /** Where the container's dirs are (or will be): a pure function of the id. */
  dirsFor(containerId: string): ContainerDirs;
  /** The FIFO paths createIo makes for these options: a pure function of the id. */
  ioFor(containerId: string, options: { stdin: boolean; tty: boolean }): ContainerIo;
  createDirs(containerId: string): Promise<ContainerDirs>;
  /** Creates each image-volume host dir (all under the container's root dir). */
  createVolumeDirs(containerId: string, hostPaths: readonly string[]): Promise<void>;
  createIo(containerId: string, options: { stdin: boolean; tty: boolean }): Promise<ContainerIo>;
  /**
   * Makes each mount host path that was missing when the spec was built (`absent`) as
   * directories, 0755, as containerd's CRI and CRI-O do; never through a symlink. Returns
   * one entry per absent source, with the directories made ([] when it exists by now)
   * and its pin as it is now. Nothing undoes it (docs/decisions.md).
   */
  createHostPaths(sources: readonly MountSource[]): Promise<CreatedHostPath[]>;
  /** Keeps the mount host paths as the spec resolved them (in the container's dir), for checkMountSources. */
  pinMountSources(containerId: string, sources: readonly MountSource[]): Promise<void>;
  /**
   * Before the task is created: throws InvalidArgumentError naming the mount when a
   * pinned host path is now a symlink, gone, or another file.
   */
  checkMountSources(containerId: string): Promise<void>;
  removeDirs(containerId: string): Promise<void>;
}

/** A CRI mount's host path as the spec resolved it: its real path and the (device, inode) it named. */
export interface MountSource {
  /** The request field, for errors (`config.mounts[0].host_path`). */
  field: string;
  path: string;
  dev: number;
  ino: number;
  /** The path did not exist then (dev and ino are 0): if it exists at start, no part of it may be a symlink. */
  absent?: boolean;
}

/** A mount host path CreateContainer made because it was missing. */
export interface CreatedHostPath {
  /** The request field (`config.mounts[0].host_path`). */
  field: string;
  path: string;
  /** The directories made, outermost first: the missing parents too. */
  created: string[];
  /** Their mode (0o755). */
  mode: number;
  /** The pin of the path as it is now. */
  pin: MountSource;
}

/** What the spec factory needs to build a container's OCI spec. */
export interface ContainerSpecInput {
  containerId: string;
  /** The CRI ContainerConfig and PodSandboxConfig of the request, as the CRI server decoded them. */
  config: unknown;
  sandboxConfig: unknown;
  sandbox: { id: string; pid: number; netnsPath: string; hostNetwork: boolean; name: string };
  image: ResolvedImage;
  userFiles: { passwd?: string; group?: string };
  dirs: ContainerDirs;
}

/** Builds OCI runtime specs; throws InvalidArgumentError naming the CRI field it refuses. */
export interface SpecFactory {
  containerSpec(input: ContainerSpecInput): Promise<{
    spec: Record<string, unknown>;
    /** `sha256:` of the spec's JSON, as specDigest (spec-digest.ts) computes it, computed here without a trip through Web Crypto's thread pool. */
    specDigest: string;
    /** Image volumes to create on the host (already checked to stay under the root dir). */
    volumeHostPaths: string[];
    /** The mount host paths the spec names, resolved and pinned. */
    mountSources?: MountSource[];
    /** The container's log file on the host, or '' when the request has none. */
    logPath: string;
    /** What the host could not honour (no AppArmor, no SELinux), for the log. */
    notes: string[];
  }>;
}

/** A port a pod publishes on the host (CRI PortMapping). */
export interface PortMapping {
  protocol: 'tcp' | 'udp' | 'sctp';
  containerPort: number;
  hostPort: number;
  hostIp: string;
}

/** The pod's network: its namespace file and CNI, keyed by the sandbox id; teardown is idempotent. */
export interface SandboxNetwork {
  /** Where the sandbox's netns file is (or will be): a pure function of the id. */
  netnsPathFor(sandboxId: string): string;
  createNetns(sandboxId: string): Promise<string>;
  removeNetns(sandboxId: string): Promise<void>;
  setUp(request: PodNetworkRequest): Promise<{ ip: string; additionalIps: string[] }>;
  tearDown(request: PodNetworkRequest): Promise<void>;
}

export interface PodNetworkRequest {
  sandboxId: string;
  netnsPath: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  portMappings: PortMapping[];
}

/** The files a pod's containers share: hostname, hosts, resolv.conf, and /dev/shm. */
export interface PodFiles {
  /** Writes them under the sandbox's dirs (and mounts /dev/shm unless IPC is the host's). */
  create(
    sandboxId: string,
    o: { hostname: string; dns: { servers: string[]; searches: string[]; options: string[] } | null; hostIpc: boolean },
  ): Promise<void>;
  /** Unmounts /dev/shm and removes the sandbox's dirs; succeeds when nothing is there. */
  remove(sandboxId: string): Promise<void>;
}

/** Runs and stops a container's task (the pause process, for a sandbox). */
export interface TaskRuntime {
  /**
   * Creates and starts the task; `rootfs` (from prepareSnapshot) saves asking containerd
   * for the mounts. The shim's open of FIFO write ends waits for their readers.
   */
  start(
    containerId: string,
    io: { stdin?: string; stdout?: string; stderr?: string; terminal: boolean },
    rootfs?: readonly RootfsMount[],
  ): Promise<{ pid: number }>;
  /**
   * Signals, waits up to `timeoutMs`, then kills; undefined when there is no task. The
   * exit is what the process reported (`exitedAt` RFC 3339), `killed` when SIGKILL was needed.
   */
  stop(
    containerId: string,
    signal: number,
    timeoutMs: number,
  ): Promise<{ exitCode: number; exitedAt: string; killed: boolean } | undefined>;
  /** Deletes the task; succeeds when there is none. */
  delete(containerId: string): Promise<unknown>;
  /** The init process's state; undefined when there is no task. */
  state(
    containerId: string,
  ): Promise<{ status: string; pid: number; exitCode?: number; exitedAt?: string } | undefined>;
  /** Applies new OCI LinuxResources to the running task's cgroup. */
  update(containerId: string, resources: Record<string, unknown>): Promise<void>;
}

/**
 * Copies a container's stdout and stderr FIFOs into its CRI-format log file, in the
 * service's memory for as long as the container runs.
 */
export interface ContainerLogs {
  /**
   * Starts reading the FIFOs (before the task is created: the shim waits for a reader,
   * and nothing written is lost) into
   * `logPath` (empty: read and discard, so the container never blocks on a full pipe).
   */
  attach(containerId: string, o: { logPath: string; io: ContainerIo }): Promise<void>;
  /** The task never started: stop waiting for a writer and close. */
  abandon(containerId: string): Promise<void>;
  /** ReopenContainerLog: close the file and open it again at the same path. */
  reopen(containerId: string): Promise<void>;
  /** Whether the container's output is being copied now. */
  attached(containerId: string): boolean;
  /** Waits (up to a bound) for the output to drain, then closes; fine when not attached. */
  detach(containerId: string): Promise<void>;
}

/** Builds the pause container's spec (see SpecFactory for containers). */
export interface SandboxSpecFactory {
  sandboxSpec(input: {
    sandboxId: string;
    config: unknown;
    image: ResolvedImage;
    netnsPath: string;
  }): Promise<{ spec: Record<string, unknown>; specDigest: string; notes: string[] }>;
}

/*
 * What the CRI edge reads from the runtime, behind ports too (issue 14), so the edge
 * imports commands and ports, never src/adapters/containerd.
 */

/** ExecSync's runner: a command in a running container, its output kept (ContainerdExec). Throws ExecTimeoutError. */
export interface ExecRunner {
  execSync(
    containerId: string,
    o: { cmd: string[]; timeoutMs: number },
  ): Promise<{
    stdout: Uint8Array;
    stderr: Uint8Array;
    exitCode: number;
    stdoutTruncated: boolean;
    stderrTruncated: boolean;
    durationMs: number;
    execId: string;
  }>;
}

/** One container's usage at one moment; every count a decimal string (they pass 2^53). */
export interface ContainerStatsSample {
  containerId: string;
  /** When the cgroup was read, nanoseconds since the epoch. */
  timestampNs: string;
  cpu?: { usageCoreNanoSeconds: string };
  memory?: {
    workingSetBytes: string;
    availableBytes: string;
    usageBytes: string;
    rssBytes: string;
    pageFaults: string;
    majorPageFaults: string;
  };
  /** Only for a container whose snapshot was named and exists. */
  writableLayer?: { usedBytes: string; inodesUsed: string };
}

/** Where ContainerStats and ListContainerStats get samples: one runtime call for many ids (ContainerdStats). */
export interface StatsSource {
  containerStats(
    containerIds: readonly string[],
    options?: { snapshots?: ReadonlyMap<string, { snapshotter: string; key: string }> },
  ): Promise<Map<string, ContainerStatsSample>>;
}

/** What the image layers take on disk (ImageFsInfo), counts as decimal strings (ContainerdImageFs). */
export interface ImageFsUsageSource {
  usage(): Promise<{ mountpoint: string; usedBytes: string; inodesUsed: string; timestampNs: string }>;
}

/** What the runtime's task event subscription yields (ContainerdTaskEvents). */
export type TaskEvent =
  /** A process of a task exited; `execId` is '' for the task's init process (the container). */
  | { kind: 'exit'; containerId: string; execId: string; pid: number; exitCode: number; exitedAt: string }
  /** The kernel's OOM killer acted in the container's cgroup; the exit follows separately. */
  | { kind: 'oom'; containerId: string }
  /** The first subscription is live. */
  | { kind: 'subscribed' }
  /** The subscription broke and is live again. */
  | { kind: 'resubscribed'; downForMs: number };

/** Task exits and OOMs, followed for as long as the service runs; resubscribes by itself. */
export interface TaskEvents extends AsyncIterable<TaskEvent> {
  start(): void;
  stop(): Promise<void>;
}

/*
 * Streaming sessions (Exec, Attach, PortForward; src/commands/streaming-sessions.ts).
 * The CRI call validates and registers a payload with the streaming server, which
 * answers a single-use URL; the session handlers get the payload back once a client
 * uses it (src/adapters/streaming/contracts.ts).
 */

/** What every session carries from the CRI call that asked for it. */
interface SessionPayloadBase {
  /** Fresh per call (a ULID); the session's events and, for exec, the containerd exec id use it. */
  sessionId: string;
  /** The CRI call's correlation id: the session's events are recorded with it. */
  correlationId: string;
}

/** Exec and Attach requests may name the API server request behind them (CRI `audit_request_id`). */
interface AuditedPayload extends SessionPayloadBase {
  /** '' when the call carried none. */
  auditRequestId: string;
}

/** Exec: run `cmd` in the running container; stderr is false whenever tty is true. */
export interface ExecSessionPayload extends AuditedPayload {
  kind: 'exec';
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** Attach: to the container's own stdio; `tty` and `stdinOnce` are the container's, as created. */
export interface AttachSessionPayload extends AuditedPayload {
  kind: 'attach';
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  stdinOnce: boolean;
}

/** PortForward: connections to ports inside the pod's network namespace (the host's for a host-network pod). */
export interface PortForwardSessionPayload extends SessionPayloadBase {
  kind: 'portforward';
  sandboxId: string;
  /** The ports the request named; [] lets the client name any. */
  ports: number[];
  /** The pod's netns file; '' for a host-network pod (connect on the host). */
  netnsPath: string;
  hostNetwork: boolean;
}

export type SessionPayload = ExecSessionPayload | AttachSessionPayload | PortForwardSessionPayload;

/** The streaming server as the commands see it (`StreamingServer<SessionPayload>` implements it). */
export interface StreamingSessions {
  /** A single-use, expiring URL for the session; the payload comes back to the session handler. */
  register(kind: SessionKind, payload: SessionPayload): string;
}

/** Ends an exec process a previous service process left running (startup recovery); fine when it is gone. */
export interface ExecProcesses {
  kill(containerId: string, execId: string): Promise<void>;
}
