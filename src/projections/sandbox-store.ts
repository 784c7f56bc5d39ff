import { assertNever, type EventData, type LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';
import type { Projection } from './read-model.js';
import { sharedStrings } from './string-pool.js';

/*
 * Sandbox store: sandbox id -> metadata and state, as ListPodSandbox will show it.
 *
 *   SandboxReserved ──> CREATING ──SandboxReady──> READY ──SandboxStopped──> NOTREADY
 *                          │ Compensated                                      │
 *                          v                                 SandboxRemoved   v
 *                       (gone) <──────────────────────────────────────────  (gone)
 */

export type SandboxState = 'CREATING' | 'READY' | 'NOTREADY';

export interface SandboxRecord {
  id: string;
  name: string;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  state: SandboxState;
  runtimeHandler: string;
  hostNetwork: boolean;
  namespaceOptions: { network: string; pid: string; ipc: string };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /**
   * The host ports the pod publishes, as CNI ADD got them; DEL needs them again. Empty
   * for a sandbox reserved by a build before SandboxReserved v2, which did not record them.
   */
  portMappings: EventData['SandboxReserved']['portMappings'];
  reservedAt: string;
  createdAt?: string;
  stoppedAt?: string;
  pid?: number;
  ip?: string;
  additionalIps?: string[];
  netnsPath?: string;
  /** The pause container's rootfs snapshot (SnapshotPrepared). */
  snapshot?: { snapshotter: string; key: string; parent: string };
  /** When reconciliation found containerd no longer holds this sandbox's pause container. */
  missingInRuntimeSince?: string;
  version: number;
  lastEvent: { type: string; at: string; seq: number };
}

function touch(doc: SandboxRecord, event: LedgerEvent, patch: Partial<SandboxRecord>): SandboxRecord {
  return { ...doc, ...patch, version: event.version, lastEvent: { type: event.type, at: event.at, seq: event.seq } };
}

export const sandboxStore: Projection<SandboxRecord> = {
  name: 'sandboxes',

  keysOf(event) {
    // Reconciliation's finding is about other streams' sandboxs: the ones containerd lacks.
    if (event.type === 'RuntimeReconciled')
      return event.data.missing.filter((m) => m.kind === 'sandbox').map((m) => m.id);
    return event.stream.startsWith('sandbox-') ? [parseStream(event.stream).id] : [];
  },

  share(doc) {
    return {
      ...doc,
      metadata: { ...doc.metadata, namespace: sharedStrings.of(doc.metadata.namespace) },
      runtimeHandler: sharedStrings.of(doc.runtimeHandler),
    };
  },

  evolve(doc, event) {
    if (event.type === 'SandboxReserved') {
      if (doc) return doc;
      const d = event.data;
      return {
        id: d.sandboxId,
        name: d.name,
        metadata: { ...d.metadata, namespace: sharedStrings.of(d.metadata.namespace) },
        state: 'CREATING',
        runtimeHandler: sharedStrings.of(d.runtimeHandler),
        hostNetwork: d.hostNetwork,
        namespaceOptions: d.namespaceOptions ?? {
          network: d.hostNetwork ? 'NODE' : 'POD',
          pid: 'CONTAINER',
          ipc: 'POD',
        },
        labels: d.labels,
        annotations: d.annotations,
        portMappings: 'portMappings' in d ? d.portMappings : [],
        reservedAt: event.at,
        version: event.version,
        lastEvent: { type: event.type, at: event.at, seq: event.seq },
      };
    }
    // From the node's stream, about this sandbox: its versions are not this stream's.
    if (event.type === 'RuntimeReconciled')
      return doc && doc.missingInRuntimeSince === undefined ? { ...doc, missingInRuntimeSince: event.at } : doc;
    if (!doc || event.version <= doc.version) return doc;
    switch (event.type) {
      case 'SandboxReady':
        return touch(doc, event, {
          state: 'READY',
          createdAt: event.data.createdAt,
          pid: event.data.pid,
          ip: event.data.ip,
          additionalIps: event.data.additionalIps,
          netnsPath: event.data.netnsPath,
        });
      case 'SandboxStopped':
        return touch(doc, event, { state: 'NOTREADY', stoppedAt: event.data.stoppedAt });
      case 'SandboxRemoved':
      case 'Compensated':
        return undefined;
      case 'RetryServed':
      case 'ResultUndelivered':
      case 'RecoveryDecided':
        return touch(doc, event, {});
      case 'OperationStalled':
        // Still CREATING: the last event says where it is stuck.
        return touch(doc, event, {});
      case 'SnapshotPrepared':
        return touch(doc, event, { snapshot: event.data });
      case 'PortForwardStarted':
      case 'PortForwardEnded':
        // A session only moves the stream version on.
        return touch(doc, event, {});
      case 'NameReserved':
      case 'SpecGenerated':
      case 'ContainerCreated':
      case 'ContainerStarted':
      case 'ContainerExited':
      case 'ContainerStopped':
      case 'ImagePullStarted':
      case 'ImagePullProgress':
      case 'ImagePulled':
      case 'ImagePullFailed':
      case 'ImageRemoved':
      case 'ExecRan':
      case 'HostPathCreated':
      case 'ContainerResourcesUpdated':
      case 'ContainerRemoved':
      case 'PodCidrUpdated':
      case 'ExecStarted':
      case 'ExecEnded':
      case 'AttachStarted':
      case 'AttachEnded':
        return doc;
      default:
        return assertNever(event);
    }
  },
};
