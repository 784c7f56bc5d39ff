import { createHash, randomBytes } from 'node:crypto';
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import { unary } from './runtime-info.js';
import { createContainer, type CreateContainerCommand, type CreateContainerDeps } from '../../commands/create-container.js';
import type { Ledger } from '../../commands/ledger.js';
import { runPodSandbox, type RunPodSandboxCommand, type RunPodSandboxDeps } from '../../commands/run-pod-sandbox.js';
import { removePodSandbox } from '../../commands/remove-pod-sandbox.js';
import { stopPodSandbox } from '../../commands/stop-pod-sandbox.js';
import { NotFoundError } from '../../domain/errors.js';
import { nodeStream } from '../../domain/ids.js';
import { DEFAULT_IMAGE_SNAPSHOTTER } from '../containerd/containerd-images.js';
import { newEventId } from '../ids/event-id.js';
import { correlationIdFrom } from '../grpc/rpc-logging.js';
import {
  containerMessage,
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
}

function operation(call: { metadata: Metadata }, sandboxId: string) {
  return { sandboxId, correlationId: correlationIdOf(call), now: new Date().toISOString() };
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
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** The call's correlation id; served through the socket, the RPC interceptor has set one. */
function correlationIdOf(call: { metadata: Metadata }): string {
  return correlationIdFrom(call.metadata) ?? newEventId();
}

export function runtimeHandlers(deps: RuntimeHandlerDeps): UntypedServiceImplementation {
  const projections = deps.ledger.projections;
  return {
    RunPodSandbox: unary<RunPodSandboxRequest__Output, { podSandboxId: string }>(async (request, call) => {
      const podSandboxId = await runPodSandbox(
        { ledger: deps.ledger, ...deps.sandboxes },
        { request: request as unknown as RunPodSandboxCommand['request'], sandboxId: newResourceId(), requestDigest: requestDigest(request), correlationId: correlationIdOf(call), now: new Date().toISOString() },
      );
      return { podSandboxId };
    }),
    CreateContainer: unary<CreateContainerRequest__Output, { containerId: string }>(async (request, call) => {
      const containerId = await createContainer(
        { ledger: deps.ledger, ...deps.containers },
        { request: request as unknown as CreateContainerCommand['request'], containerId: newResourceId(), requestDigest: requestDigest(request), correlationId: correlationIdOf(call), now: new Date().toISOString() },
      );
      return { containerId };
    }),
    StopPodSandbox: unary<{ podSandboxId: string }, object>(async (request, call) => {
      await stopPodSandbox({ ledger: deps.ledger, ...deps.sandboxes }, operation(call, request.podSandboxId));
      return {};
    }),
    RemovePodSandbox: unary<{ podSandboxId: string }, object>(async (request, call) => {
      const s = deps.sandboxes;
      await removePodSandbox(
        { ledger: deps.ledger, tasks: s.tasks, network: s.network, runtime: s.runtime, podFiles: s.files, containerFiles: deps.containers.files, snapshotter: DEFAULT_IMAGE_SNAPSHOTTER },
        operation(call, request.podSandboxId),
      );
      return {};
    }),
    UpdateRuntimeConfig: unary<{ runtimeConfig: { networkConfig: { podCidr: string } | null } | null }, object>(async (request, call) => {
      const podCidr = request.runtimeConfig?.networkConfig?.podCidr ?? '';
      await deps.ledger.append(nodeStream(deps.node), 'any', [{ type: 'PodCidrUpdated', correlationId: correlationIdOf(call), data: { podCidr } }]);
      return {};
    }),
    ListContainers: unary<ListContainersRequest__Output, object>(async (request) => ({
      containers: filterContainers(visibleContainers(projections.containers.values()), request.filter).map(containerMessage),
    })),
    ContainerStatus: unary<ContainerStatusRequest__Output, object>(async (request) => {
      const record = projections.findContainer(request.containerId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('container', request.containerId);
      return { status: containerStatusMessage(record), info: {} };
    }),
    ListPodSandbox: unary<ListPodSandboxRequest__Output, object>(async (request) => ({
      items: filterSandboxes(visibleSandboxes(projections.sandboxes.values()), request.filter).map(sandboxMessage),
    })),
    PodSandboxStatus: unary<PodSandboxStatusRequest__Output, object>(async (request) => {
      const record = projections.findSandbox(request.podSandboxId);
      if (!record || record.state === 'CREATING') throw new NotFoundError('sandbox', request.podSandboxId);
      return { status: sandboxStatusMessage(record), info: {}, containersStatuses: [] };
    }),
  };
}
