import type { ContainerStatsSample } from '../../commands/ports.js';
import type { ContainerRecord } from '../../projections/container-store.js';
import type { SandboxRecord } from '../../projections/sandbox-store.js';
import type { Container } from './generated/runtime/v1/Container.js';
import type { ContainerFilter__Output } from './generated/runtime/v1/ContainerFilter.js';
import type { ContainerStatus } from './generated/runtime/v1/ContainerStatus.js';
import type { PodSandbox } from './generated/runtime/v1/PodSandbox.js';
import type { PodSandboxFilter__Output } from './generated/runtime/v1/PodSandboxFilter.js';
import type { NamespaceMode } from './generated/runtime/v1/NamespaceMode.js';
import type { PodSandboxStatus } from './generated/runtime/v1/PodSandboxStatus.js';

/*
 * The projections as CRI messages. CRI times are int64 nanoseconds, sent as decimal
 * strings (they exceed 2^53); an unset time is '0'.
 */

/** ISO 8601 -> nanoseconds since the epoch, as a decimal string; '0' when unset. */
export function nanos(iso: string | undefined): string {
  if (!iso) return '0';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return '0';
  const fraction = /\.(\d+)/.exec(iso)?.[1] ?? '';
  // Keep sub-millisecond digits when the time has them.
  const subMs = fraction.length > 3 ? BigInt(fraction.slice(3, 9).padEnd(6, '0')) : 0n;
  return (BigInt(ms) * 1_000_000n + subMs).toString();
}

const CONTAINER_STATE = {
  CREATING: 'CONTAINER_UNKNOWN',
  CREATED: 'CONTAINER_CREATED',
  RUNNING: 'CONTAINER_RUNNING',
  EXITED: 'CONTAINER_EXITED',
} as const;

/** kubelet sees a container once ContainerCreated is recorded; one still CREATING is not listed. */
export function visibleContainers(records: Iterable<ContainerRecord>): ContainerRecord[] {
  return [...records].filter((r) => r.state !== 'CREATING');
}

function matchesLabels(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

export function filterContainers(
  records: ContainerRecord[],
  filter: ContainerFilter__Output | null,
): ContainerRecord[] {
  if (!filter) return records;
  return records.filter(
    (r) =>
      (filter.id === '' || r.id.startsWith(filter.id)) &&
      (filter.podSandboxId === '' || r.sandboxId.startsWith(filter.podSandboxId)) &&
      (filter.state === null || CONTAINER_STATE[r.state] === filter.state.state) &&
      matchesLabels(r.labels, filter.labelSelector),
  );
}

export function containerMessage(r: ContainerRecord): Container {
  return {
    id: r.id,
    podSandboxId: r.sandboxId,
    metadata: r.metadata,
    image: { image: r.image },
    imageRef: r.imageRef,
    imageId: r.imageRef,
    state: CONTAINER_STATE[r.state],
    createdAt: nanos(r.createdAt),
    labels: r.labels,
    annotations: r.annotations,
  };
}

export function containerStatusMessage(r: ContainerRecord): ContainerStatus {
  return {
    id: r.id,
    metadata: r.metadata,
    state: CONTAINER_STATE[r.state],
    createdAt: nanos(r.createdAt),
    startedAt: nanos(r.startedAt),
    finishedAt: nanos(r.finishedAt),
    exitCode: r.exitCode ?? 0,
    image: { image: r.image },
    imageRef: r.imageRef,
    imageId: r.imageRef,
    reason: r.reason ?? '',
    message:
      r.message ||
      (r.missingInRuntimeSince
        ? `containerd no longer holds this container (found at ${r.missingInRuntimeSince}); remove it`
        : ''),
    labels: r.labels,
    annotations: r.annotations,
    mounts: (r.mounts ?? []).map((m) => ({ ...m, propagation: m.propagation as never })),
    logPath: r.logPath ?? '',
    ...(r.resources ? { resources: { linux: { ...r.resources, hugepageLimits: [], unified: {} } } } : {}),
  };
}

/** A CRI ContainerStats: attributes always; cpu, memory and the writable layer when there is a sample. */
export function containerStatsMessage(r: ContainerRecord, sample: ContainerStatsSample | undefined) {
  const attributes = { id: r.id, metadata: r.metadata, labels: r.labels, annotations: r.annotations };
  if (!sample) return { attributes };
  const t = sample.timestampNs;
  const m = sample.memory;
  return {
    attributes,
    ...(sample.cpu ? { cpu: { timestamp: t, usageCoreNanoSeconds: { value: sample.cpu.usageCoreNanoSeconds } } } : {}),
    ...(m
      ? {
          memory: {
            timestamp: t,
            workingSetBytes: { value: m.workingSetBytes },
            availableBytes: { value: m.availableBytes },
            usageBytes: { value: m.usageBytes },
            rssBytes: { value: m.rssBytes },
            pageFaults: { value: m.pageFaults },
            majorPageFaults: { value: m.majorPageFaults },
          },
        }
      : {}),
    ...(sample.writableLayer
      ? {
          writableLayer: {
            timestamp: t,
            fsId: { mountpoint: '' },
            usedBytes: { value: sample.writableLayer.usedBytes },
            inodesUsed: { value: sample.writableLayer.inodesUsed },
          },
        }
      : {}),
  };
}

/** Sums decimal-string counters (they may pass 2^53). */
function sum(values: Array<string | undefined>): string {
  return values.reduce((total, v) => total + BigInt(v ?? '0'), 0n).toString();
}

/**
 * A CRI PodSandboxStats: the pod's CPU and memory are its pause task's plus its running
 * containers' (the pod cgroup's total, from the tasks containerd reports), and each
 * container's own stats.
 */
export function podSandboxStatsMessage(
  r: SandboxRecord,
  pause: ContainerStatsSample | undefined,
  containers: object[],
  running: Array<ContainerStatsSample | undefined>,
) {
  const attributes = { id: r.id, metadata: r.metadata, labels: r.labels, annotations: r.annotations };
  const all = [pause, ...running].filter((s): s is ContainerStatsSample => s !== undefined);
  if (all.length === 0) return { attributes, linux: { containers } };
  const t = all
    .map((s) => BigInt(s.timestampNs))
    .reduce((a, b) => (a > b ? a : b))
    .toString();
  return {
    attributes,
    linux: {
      cpu: { timestamp: t, usageCoreNanoSeconds: { value: sum(all.map((s) => s.cpu?.usageCoreNanoSeconds)) } },
      memory: {
        timestamp: t,
        workingSetBytes: { value: sum(all.map((s) => s.memory?.workingSetBytes)) },
        usageBytes: { value: sum(all.map((s) => s.memory?.usageBytes)) },
        rssBytes: { value: sum(all.map((s) => s.memory?.rssBytes)) },
        pageFaults: { value: sum(all.map((s) => s.memory?.pageFaults)) },
        majorPageFaults: { value: sum(all.map((s) => s.memory?.majorPageFaults)) },
      },
      containers,
    },
  };
}

const SANDBOX_STATE = { CREATING: 'SANDBOX_NOTREADY', READY: 'SANDBOX_READY', NOTREADY: 'SANDBOX_NOTREADY' } as const;

export function visibleSandboxes(records: Iterable<SandboxRecord>): SandboxRecord[] {
  return [...records].filter((r) => r.state !== 'CREATING');
}

export function filterSandboxes(records: SandboxRecord[], filter: PodSandboxFilter__Output | null): SandboxRecord[] {
  if (!filter) return records;
  return records.filter(
    (r) =>
      (filter.id === '' || r.id.startsWith(filter.id)) &&
      (filter.state === null || SANDBOX_STATE[r.state] === filter.state.state) &&
      matchesLabels(r.labels, filter.labelSelector),
  );
}

export function sandboxMessage(r: SandboxRecord): PodSandbox {
  return {
    id: r.id,
    metadata: r.metadata,
    state: SANDBOX_STATE[r.state],
    createdAt: nanos(r.createdAt),
    labels: r.labels,
    annotations: r.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}

export function sandboxStatusMessage(r: SandboxRecord): PodSandboxStatus {
  return {
    id: r.id,
    metadata: r.metadata,
    state: SANDBOX_STATE[r.state],
    createdAt: nanos(r.createdAt),
    network: { ip: r.ip ?? '', additionalIps: (r.additionalIps ?? []).map((ip) => ({ ip })) },
    linux: {
      namespaces: { options: { ...(r.namespaceOptions as unknown as Record<string, NamespaceMode>), targetId: '' } },
    },
    labels: r.labels,
    annotations: r.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}
