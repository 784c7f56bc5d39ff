import { assertNever, type LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';
import { sharedStrings } from './string-pool.js';

/*
 * Container store: container id -> metadata and status, as ListContainers and
 * ContainerStatus will show it.
 *
 *   NameReserved ──> CREATING ──ContainerCreated──> CREATED ──ContainerStarted──> RUNNING
 *                      │                              │                             │
 *                      │ Compensated                  │ ContainerExited             │ ContainerExited
 *                      v                              v   (start failed)            v
 *                   (gone)                          EXITED <────ContainerStopped─────┘
 *
 *   ContainerRemoved from any state -> (gone). SpecGenerated and SnapshotPrepared fill in
 *   CREATING; a container in CREATING is not shown to kubelet yet.
 */

export type ContainerState = 'CREATING' | 'CREATED' | 'RUNNING' | 'EXITED';

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  name: string;
  metadata: { name: string; attempt: number };
  image: string;
  imageRef: string;
  requestDigest: string;
  state: ContainerState;
  /** When NameReserved was recorded. */
  reservedAt: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  pid?: number;
  exitCode?: number;
  reason?: string;
  message?: string;
  logPath?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler?: string;
  specDigest?: string;
  snapshot?: { snapshotter: string; key: string; parent: string };
  /** The signal StopContainer sends first (ContainerCreated); `stoppedWith` is the one it sent. */
  stopSignal?: string;
  stoppedWith?: string;
  stdin?: boolean;
  tty?: boolean;
  /** Attach closes stdin after the first client detaches (ContainerCreated v2; absent: false). */
  stdinOnce?: boolean;
  mounts?: Array<{
    containerPath: string;
    hostPath: string;
    readonly: boolean;
    selinuxRelabel: boolean;
    propagation: string;
  }>;
  resources?: Record<
    'cpuPeriod' | 'cpuQuota' | 'cpuShares' | 'memoryLimitInBytes' | 'oomScoreAdj' | 'cpusetCpus' | 'cpusetMems',
    string
  >;
  /** When reconciliation found containerd no longer holds this container's record. */
  missingInRuntimeSince?: string;
  /** The stream version of the last event applied. */
  version: number;
  /** The last event applied, for "what happened last" questions. */
  lastEvent: { type: string; at: string; seq: number };
}

function touch(doc: ContainerRecord, event: LedgerEvent, patch: Partial<ContainerRecord>): ContainerRecord {
  return { ...doc, ...patch, version: event.version, lastEvent: { type: event.type, at: event.at, seq: event.seq } };
}

export const containerStore: Projection<ContainerRecord> = {
  name: 'containers',

  keysOf(event) {
    // Reconciliation's finding is about other streams' containers: the ones containerd lacks.
    if (event.type === 'RuntimeReconciled')
      return event.data.missing.filter((m) => m.kind === 'container').map((m) => m.id);
    return event.stream.startsWith('container-') ? [parseStream(event.stream).id] : [];
  },

  share(doc) {
    const shared: ContainerRecord = {
      ...doc,
      sandboxId: sharedStrings.of(doc.sandboxId),
      image: sharedStrings.of(doc.image),
      imageRef: sharedStrings.of(doc.imageRef),
    };
    if (doc.runtimeHandler !== undefined) shared.runtimeHandler = sharedStrings.of(doc.runtimeHandler);
    if (doc.reason !== undefined) shared.reason = sharedStrings.of(doc.reason);
    if (doc.snapshot)
      shared.snapshot = {
        ...doc.snapshot,
        snapshotter: sharedStrings.of(doc.snapshot.snapshotter),
        key: doc.snapshot.key === doc.id ? doc.id : doc.snapshot.key,
        parent: sharedStrings.of(doc.snapshot.parent),
      };
    return shared;
  },

  evolve(doc, event) {
    if (event.type === 'NameReserved') {
      if (doc) return doc;
      const d = event.data;
      return {
        id: d.containerId,
        sandboxId: sharedStrings.of(d.sandboxId),
        name: d.name,
        metadata: d.metadata,
        image: sharedStrings.of(d.image),
        imageRef: '',
        requestDigest: d.requestDigest,
        state: 'CREATING',
        reservedAt: event.at,
        labels: {},
        annotations: {},
        version: event.version,
        lastEvent: { type: event.type, at: event.at, seq: event.seq },
      };
    }
    // From the node's stream, about this container: its versions are not this stream's.
    if (event.type === 'RuntimeReconciled')
      return doc && doc.missingInRuntimeSince === undefined ? { ...doc, missingInRuntimeSince: event.at } : doc;
    // Anything else needs the record, and applies once per stream version.
    if (!doc || event.version <= doc.version) return doc;
    switch (event.type) {
      case 'SpecGenerated':
        return touch(doc, event, {
          runtimeHandler: sharedStrings.of(event.data.runtimeHandler),
          specDigest: event.data.specDigest,
          imageRef: sharedStrings.of(event.data.imageRef),
        });
      case 'SnapshotPrepared':
        // The key is the container id by design; keep one copy of that string, not two.
        return touch(doc, event, {
          snapshot: {
            ...event.data,
            snapshotter: sharedStrings.of(event.data.snapshotter),
            key: event.data.key === doc.id ? doc.id : event.data.key,
            parent: sharedStrings.of(event.data.parent),
          },
        });
      case 'ContainerCreated':
        return touch(doc, event, {
          state: 'CREATED',
          createdAt: event.data.createdAt,
          imageRef: sharedStrings.of(event.data.imageRef),
          logPath: event.data.logPath,
          labels: event.data.labels,
          annotations: event.data.annotations,
          ...(event.data.stdin === undefined ? {} : { stdin: event.data.stdin }),
          ...(event.data.tty === undefined ? {} : { tty: event.data.tty }),
          ...('stdinOnce' in event.data && event.data.stdinOnce !== undefined
            ? { stdinOnce: event.data.stdinOnce }
            : {}),
          ...(event.data.stopSignal === undefined ? {} : { stopSignal: event.data.stopSignal }),
          ...(event.data.mounts === undefined ? {} : { mounts: event.data.mounts }),
          ...(event.data.resources === undefined ? {} : { resources: event.data.resources }),
        });
      case 'ContainerStarted':
        return touch(doc, event, { state: 'RUNNING', pid: event.data.pid, startedAt: event.data.startedAt });
      case 'ContainerExited':
        return touch(doc, event, {
          state: 'EXITED',
          exitCode: event.data.exitCode,
          finishedAt: event.data.finishedAt,
          reason: sharedStrings.of(event.data.reason),
          message: event.data.message,
        });
      case 'ContainerStopped':
        return touch(doc, event, {
          state: 'EXITED',
          stoppedWith: event.data.signal,
          finishedAt: doc.finishedAt ?? event.data.stoppedAt,
        });
      case 'ExecRan':
      case 'HostPathCreated':
      case 'RetryServed':
      case 'ResultUndelivered':
      case 'RecoveryDecided':
        return touch(doc, event, {});
      case 'OperationStalled':
        // Still CREATING: the last event says where it is stuck.
        return touch(doc, event, {});
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
        // The state is the task's; a session only moves the stream version on.
        return touch(doc, event, {});
      case 'ContainerResourcesUpdated':
        return touch(doc, event, { resources: event.data.resources });
      case 'Compensated':
      case 'ContainerRemoved':
        return undefined;
      case 'ImagePullStarted':
      case 'ImagePullProgress':
      case 'ImagePulled':
      case 'ImagePullFailed':
      case 'ImageRemoved':
      case 'SandboxReserved':
      case 'SandboxReady':
      case 'SandboxStopped':
      case 'SandboxRemoved':
      case 'PodCidrUpdated':
      case 'PortForwardStarted':
      case 'PortForwardEnded':
        return doc;
      default:
        return assertNever(event);
    }
  },
};
