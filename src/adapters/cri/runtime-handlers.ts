import { createHash, randomBytes } from 'node:crypto';
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import { callerOf, deadlineMsOf, type CancellableCall } from './caller.js';
import { unary } from './runtime-info.js';
import { streamingHandlers } from './streaming-handlers.js';
import {
  createContainer,
  type CreateContainerCommand,
  type CreateContainerDeps,
} from '../../commands/create-container.js';
import type { Ledger } from '../../commands/ledger.js';
import { runPodSandbox, type RunPodSandboxCommand, type RunPodSandboxDeps } from '../../commands/run-pod-sandbox.js';
import { removePodSandbox } from '../../commands/remove-pod-sandbox.js';
import { stopPodSandbox } from '../../commands/stop-pod-sandbox.js';
import {
  removeContainer,
  startContainer,
  stopContainer,
  updateContainerResources,
  type CriLinuxResources,
  type LifecycleDeps,
} from '../../commands/container-lifecycle.js';
import { runtimeFor } from '../../commands/pod-runtime.js';
import { execSync } from '../../commands/exec-sync.js';
import type { ExecRunner, StatsSource, StreamingSessions } from '../../commands/ports.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../domain/errors.js';
import { containerStream, nodeStream, sandboxStream } from '../../domain/ids.js';
import type { ContainerRecord } from '../../projections/container-store.js';
import type { SandboxRecord } from '../../projections/sandbox-store.js';
import { correlationIdOf } from '../grpc/correlation.js';
import {
  containerMessage,
  containerStatsMessage,
  podSandboxStatsMessage,
  containerStatusMessage,
  filterContainers,
  filterSandboxes,
  sandboxMessage,
  sandboxStatusMessage,
  visibleContainers,
  visibleSandboxes,
} from './cri-views.js';
import type { ContainerStatusRequest__Output } from './generated/runtime/v1/ContainerStatusRequest.js';
import type { CreateContainerRequest__Output } from './generated/runtime/v1/CreateContainerRequest.js';
import type { ListContainersRequest__Output } from './generated/runtime/v1/ListContainersRequest.js';
import type { ListPodSandboxRequest__Output } from './generated/runtime/v1/ListPodSandboxRequest.js';
import type { PodSandboxStatusRequest__Output } from './generated/runtime/v1/PodSandboxStatusRequest.js';
import type { RunPodSandboxRequest__Output } from './generated/runtime/v1/RunPodSandboxRequest.js';

/*
 * The CRI RPCs that create pods and containers and read them back: proto <-> command.
 * Ids and request digests are made here (the core imports no crypto); errors become
 * statuses in src/adapters/grpc/status.ts.
 */

export interface RuntimeHandlerDeps {
  ledger: Ledger;
  /** This node's name: UpdateRuntimeConfig records into stream `node-<node>`. */
  node: string;
  sandboxes: Omit<RunPodSandboxDeps, 'ledger'>;
  containers: Omit<CreateContainerDeps, 'ledger'>;
  lifecycle: LifecycleDeps;
  exec: ExecRunner;
  stats: StatsSource;
  /** The streaming server Exec, Attach and PortForward register sessions with; absent: they answer UNIMPLEMENTED. */
  streaming?: StreamingSessions;
}

function operation(call: { metadata: Metadata }, sandboxId: string) {
  return { sandboxId, correlationId: correlationIdOf(call), now: new Date().toISOString() };
}

function containerOperation(call: { metadata: Metadata }, containerId: string) {
  if (containerId.length === 0) throw new InvalidArgumentError('container_id', 'must be set');
  return { containerId, correlationId: correlationIdOf(call), now: new Date().toISOString() };
}

/**
 * The caller's deadline as ms since the epoch, for the stall watchdog; absent when the
 * call has none.
 */
export function deadlineOf(call: Pick<CancellableCall, 'getDeadline'>): { deadline?: number } {
  const ms = deadlineMsOf(call);
  return ms === undefined ? {} : { deadline: ms };
}

/** What CreateContainer and RunPodSandbox take from the call: digest, correlation, time, the caller and its deadline. */
function sagaCall(request: object, call: CancellableCall & { metadata: Metadata }) {
  return {
    requestDigest: requestDigest(request),
    correlationId: correlationIdOf(call),
    now: new Date().toISOString(),
    caller: callerOf(call),
    ...deadlineOf(call),
  };
}

/** A fresh 64-hex container or sandbox id. */
export function newResourceId(): string {
  return randomBytes(32).toString('hex');
}

/** sha256 of the request's canonical JSON (keys sorted): a retry of the same request has the same digest. */
export function requestDigest(request: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(request)).digest('hex')}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** Each container's rootfs snapshot, for the writable layer's usage; `snapshotter` for records that predate SnapshotPrepared. */
function snapshotsOf(
  records: ContainerRecord[],
  snapshotter: string,
): Map<string, { snapshotter: string; key: string }> {
  return new Map(
    records.map((r) => [r.id, { snapshotter: r.snapshot?.snapshotter ?? snapshotter, key: r.snapshot?.key ?? r.id }]),
  );
}

export function runtimeHandlers(deps: RuntimeHandlerDeps): UntypedServiceImplementation {
  const projections = deps.ledger.projections;
  const snapshots = (records: ContainerRecord[]) => snapshotsOf(records, deps.lifecycle.snapshotter);
  /** Pod stats: the pause task's and its running containers' samples, in one containerd call. */
  const podStats = async (sandboxes: SandboxRecord[]) => {
    const ids = new Set(sandboxes.map((s) => s.id));
    const containers = visibleContainers(projections.containers.values()).filter((c) => ids.has(c.sandboxId));
    const running = containers.filter((c) => c.state === 'RUNNING');
    const samples = await deps.stats.containerStats(
      [...sandboxes.filter((s) => s.state === 'READY').map((s) => s.id), ...running.map((c) => c.id)],
      { snapshots: snapshots(running) },
    );
    return sandboxes.map((s) =>
      podSandboxStatsMessage(
        s,
        samples.get(s.id),
        containers.filter((c) => c.sandboxId === s.id).map((c) => containerStatsMessage(c, samples.get(c.id))),
        running.filter((c) => c.sandboxId === s.id).map((c) => samples.get(c.id)),
      ),
    );
  };
  return {
    ...streamingHandlers({ projections, ...(deps.streaming ? { streaming: deps.streaming } : {}) }),
    RunPodSandbox: unary<RunPodSandboxRequest__Output, { podSandboxId: string }>(async (request, call) => {
      const podSandboxId = await runPodSandbox(
        { ledger: deps.ledger, ...deps.sandboxes },
        {
          request: request as unknown as RunPodSandboxCommand['request'],
          sandboxId: newResourceId(),
          ...sagaCall(request, call),
        },
      );
      return { podSandboxId };
    }),
    CreateContainer: unary<CreateContainerRequest__Output, { containerId: string }>(async (request, call) => {
      const containerId = await createContainer(
        { ledger: deps.ledger, ...deps.containers },
        {
          request: request as unknown as CreateContainerCommand['request'],
          containerId: newResourceId(),
          ...sagaCall(request, call),
        },
      );
      return { containerId };
    }),
    StopPodSandbox: unary<{ podSandboxId: string }, object>(async (request, call) => {
      await stopPodSandbox(
        { ledger: deps.ledger, ...deps.sandboxes, lifecycle: deps.lifecycle },
        operation(call, request.podSandboxId),
      );
      return {};
    }),
    RemovePodSandbox: unary<{ podSandboxId: string }, object>(async (request, call) => {
      const s = deps.sandboxes;
      await removePodSandbox(
        {
          ledger: deps.ledger,
          tasks: s.tasks,
          network: s.network,
          runtime: s.runtime,
          podFiles: s.files,
          lifecycle: deps.lifecycle,
          snapshotter: deps.lifecycle.snapshotter,
        },
        operation(call, request.podSandboxId),
      );
      return {};
    }),
    StartContainer: unary<{ containerId: string }, object>(async (request, call) => {
      await startContainer(deps.lifecycle, containerOperation(call, request.containerId));
      return {};
    }),
    StopContainer: unary<{ containerId: string; timeout: string }, object>(async (request, call) => {
      await stopContainer(deps.lifecycle, {
        ...containerOperation(call, request.containerId),
        timeoutMs: Number(request.timeout) * 1000,
      });
      return {};
    }),
    RemoveContainer: unary<{ containerId: string }, object>(async (request, call) => {
      await removeContainer(deps.lifecycle, containerOperation(call, request.containerId));
      return {};
    }),
    ReopenContainerLog: unary<{ containerId: string }, object>(async (request) => {
      const record = projections.findContainer(request.containerId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('container', request.containerId);
      if (record.state !== 'RUNNING')
        throw new FailedPreconditionError(
          `container ${record.id} is ${record.state}, not RUNNING: its log is not open`,
        );
      await deps.lifecycle.logs.reopen(record.id);
      return {};
    }),
    ExecSync: unary<{ containerId: string; cmd: string[]; timeout: string }, object>(async (request, call) =>
      execSync(
        { lifecycle: deps.lifecycle, exec: deps.exec, clock: () => performance.now() },
        { ...request, correlationId: correlationIdOf(call) },
      ),
    ),
    UpdateContainerResources: unary<{ containerId: string; linux: Partial<CriLinuxResources> | null }, object>(
      async (request, call) => {
        if (!request.linux) throw new InvalidArgumentError('linux', 'must be set (only Linux resources are supported)');
        const l = request.linux;
        const resources: CriLinuxResources = {
          cpuPeriod: String(l.cpuPeriod ?? '0'),
          cpuQuota: String(l.cpuQuota ?? '0'),
          cpuShares: String(l.cpuShares ?? '0'),
          memoryLimitInBytes: String(l.memoryLimitInBytes ?? '0'),
          oomScoreAdj: String(l.oomScoreAdj ?? '0'),
          cpusetCpus: l.cpusetCpus ?? '',
          cpusetMems: l.cpusetMems ?? '',
        };
        await updateContainerResources(deps.lifecycle, { ...containerOperation(call, request.containerId), resources });
        return {};
      },
    ),
    PodSandboxStats: unary<{ podSandboxId: string }, object>(async (request) => {
      const sandbox = projections.findSandbox(request.podSandboxId);
      if (!sandbox || sandbox.state === 'CREATING') throw new NotFoundError('sandbox', request.podSandboxId);
      return { stats: (await podStats([sandbox]))[0] };
    }),
    ListPodSandboxStats: unary<{ filter: { id: string; labelSelector: Record<string, string> } | null }, object>(
      async (request) => {
        const sandboxes = filterSandboxes(
          visibleSandboxes(projections.sandboxes.values()),
          request.filter && { ...request.filter, state: null },
        );
        return { stats: await podStats(sandboxes) };
      },
    ),
    ContainerStats: unary<{ containerId: string }, object>(async (request) => {
      const record = projections.findContainer(request.containerId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('container', request.containerId);
      const samples =
        record.state === 'RUNNING'
          ? await deps.stats.containerStats([record.id], { snapshots: snapshots([record]) })
          : new Map();
      return { stats: containerStatsMessage(record, samples.get(record.id)) };
    }),
    ListContainerStats: unary<
      { filter: { id: string; podSandboxId: string; labelSelector: Record<string, string> } | null },
      object
    >(async (request) => {
      // The stats filter is the list filter without a state: the same matching.
      const records = filterContainers(
        visibleContainers(projections.containers.values()),
        request.filter && { ...request.filter, state: null },
      );
      const running = records.filter((r) => r.state === 'RUNNING');
      const samples = await deps.stats.containerStats(
        running.map((r) => r.id),
        { snapshots: snapshots(running) },
      );
      return { stats: records.map((r) => containerStatsMessage(r, samples.get(r.id))) };
    }),
    UpdateRuntimeConfig: unary<{ runtimeConfig: { networkConfig: { podCidr: string } | null } | null }, object>(
      async (request, call) => {
        const podCidr = request.runtimeConfig?.networkConfig?.podCidr ?? '';
        await deps.ledger.append(nodeStream(deps.node), 'any', [
          { type: 'PodCidrUpdated', correlationId: correlationIdOf(call), data: { podCidr } },
        ]);
        return {};
      },
    ),
    ListContainers: unary<ListContainersRequest__Output, object>(async (request) => ({
      containers: filterContainers(visibleContainers(projections.containers.values()), request.filter).map(
        containerMessage,
      ),
    })),
    ContainerStatus: unary<ContainerStatusRequest__Output, object>(async (request) => {
      const record = projections.findContainer(request.containerId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('container', request.containerId);
      const info: Record<string, string> = {};
      if (request.verbose) {
        const events = await deps.ledger.log.readStream(containerStream(record.id));
        const spec = events.find((e) => e.type === 'SpecGenerated');
        info.info = JSON.stringify({
          spec: spec?.type === 'SpecGenerated' ? spec.data.spec : null,
          pid: record.pid ?? 0,
          runtimeHandler: record.runtimeHandler ?? '',
          runtime: spec?.type === 'SpecGenerated' ? runtimeFor(spec.data.runtimeHandler) : '',
          snapshotKey: record.snapshot?.key ?? '',
          streamVersion: record.version,
          lastEvent: record.lastEvent,
          ...(record.missingInRuntimeSince ? { missingInRuntimeSince: record.missingInRuntimeSince } : {}),
        });
      }
      return { status: containerStatusMessage(record), info };
    }),
    ListPodSandbox: unary<ListPodSandboxRequest__Output, object>(async (request) => ({
      items: filterSandboxes(visibleSandboxes(projections.sandboxes.values()), request.filter).map(sandboxMessage),
    })),
    PodSandboxStatus: unary<PodSandboxStatusRequest__Output, object>(async (request) => {
      const record = projections.findSandbox(request.podSandboxId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('sandbox', request.podSandboxId);
      const info: Record<string, string> = {};
      if (request.verbose) {
        const events = await deps.ledger.log.readStream(sandboxStream(record.id));
        const spec = events.find((e) => e.type === 'SpecGenerated');
        info.info = JSON.stringify({
          pid: record.pid ?? 0,
          netnsPath: record.netnsPath ?? '',
          hostNetwork: record.hostNetwork,
          runtimeHandler: record.runtimeHandler,
          spec: spec?.type === 'SpecGenerated' ? spec.data.spec : null,
          streamVersion: record.version,
          lastEvent: record.lastEvent,
          ...(record.missingInRuntimeSince ? { missingInRuntimeSince: record.missingInRuntimeSince } : {}),
        });
      }
      return { status: sandboxStatusMessage(record), info, containersStatuses: [] };
    }),
  };
}
