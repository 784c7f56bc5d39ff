import {
  type sendUnaryData,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import { NotImplementedError } from '../../domain/errors.js';
import { loadServices, PROTO_DIR } from '../grpc/proto.js';
import { CRI_PROTO_SET, CRI_V1_PROTO, CRI_V1ALPHA2_PROTO } from '../grpc/proto-sets.js';
import { toServiceError } from '../grpc/status.js';
import type { ImageServiceDefinition as ImageServiceV1Definition } from './generated/runtime/v1/ImageService.js';
import type { RuntimeServiceDefinition as RuntimeServiceV1Definition } from './generated/runtime/v1/RuntimeService.js';
import type { ImageServiceDefinition as ImageServiceV1alpha2Definition } from './generated/runtime/v1alpha2/ImageService.js';
import type { RuntimeServiceDefinition as RuntimeServiceV1alpha2Definition } from './generated/runtime/v1alpha2/RuntimeService.js';

/*
 * The CRI services as grpc-js service definitions, loaded from proto/ at startup.
 *
 * The types in ./generated come from the same files with the same options
 * (`npm run gen:proto`); when an option below changes, change the script too.
 * The convention of those types: a handler receives `X__Output` (every field present,
 * decoded with the options below) and answers with `X` (fields optional, int64 as a
 * decimal string or a safe number).
 */

export { CRI_V1_PROTO, CRI_V1ALPHA2_PROTO } from '../grpc/proto-sets.js';

/**
 * How decoded messages look to handlers:
 * - camelCase field names, like the ledger API (`podSandboxId`, `createdAt`);
 * - int64 and uint64 as decimal strings: kubelet's timestamps are nanoseconds since the
 *   epoch (~1.7e18), far past 2^53, so a JavaScript number would silently round them.
 *   Use `BigInt(s)` to compute; encode from a string (or a number that is a safe integer);
 * - enums as their names (`'CONTAINER_RUNNING'`). A number the enum does not know (from a
 *   newer kubelet) stays a number;
 * - defaults for unset fields: '' / 0 / false / [] / {}, and null for an unset message,
 *   so wrapper messages (`runAsUser: Int64Value | null`) keep "unset" apart from 0.
 */
export const CRI_LOADER_OPTIONS: Options = {
  includeDirs: [PROTO_DIR],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

const criServices = loadServices(CRI_PROTO_SET, CRI_LOADER_OPTIONS);

function serviceDefinition<T extends ServiceDefinition>(fullName: string): T {
  const definition = criServices[fullName];
  if (definition === undefined)
    throw new Error(`${fullName} is not a service in ${CRI_V1_PROTO} or ${CRI_V1ALPHA2_PROTO}`);
  return definition as unknown as T;
}

/** `runtime.v1.RuntimeService`: what kubelet 1.26 and later call. */
export const runtimeServiceV1 = serviceDefinition<RuntimeServiceV1Definition>('runtime.v1.RuntimeService');
/** `runtime.v1.ImageService`. */
export const imageServiceV1 = serviceDefinition<ImageServiceV1Definition>('runtime.v1.ImageService');
/** `runtime.v1alpha2.RuntimeService`: the same messages as v1, for older kubelets and tools. */
export const runtimeServiceV1alpha2 = serviceDefinition<RuntimeServiceV1alpha2Definition>(
  'runtime.v1alpha2.RuntimeService',
);
/** `runtime.v1alpha2.ImageService`. */
export const imageServiceV1alpha2 = serviceDefinition<ImageServiceV1alpha2Definition>('runtime.v1alpha2.ImageService');

/**
 * An implementation of `definition` in which every RPC, unary or streaming, fails with
 * UNIMPLEMENTED and names itself ("runtime.v1.RuntimeService/Attach is not implemented
 * by cri-ledger yet"). Spread real handlers over it: `{ ...unimplementedHandlers(d), Version }`.
 */
export function unimplementedHandlers(definition: ServiceDefinition): UntypedServiceImplementation {
  const handlers: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const rpc = method.path.replace(/^\//, '');
    const handler: UntypedHandleCall = method.responseStream
      ? (call: ServerWritableStream<unknown, unknown>) => call.emit('error', unimplementedError(rpc))
      : (_call: unknown, callback: sendUnaryData<unknown>) => callback(unimplementedError(rpc));
    handlers[name] = handler;
  }
  return handlers;
}

function unimplementedError(rpc: string): ServiceError {
  return toServiceError(new NotImplementedError(rpc));
}

// The messages the first CRI handlers need. Everything else is in ./generated/runtime/v1.
export type { RuntimeServiceHandlers, RuntimeServiceClient } from './generated/runtime/v1/RuntimeService.js';
export type { ImageServiceHandlers, ImageServiceClient } from './generated/runtime/v1/ImageService.js';
export type { VersionRequest, VersionRequest__Output } from './generated/runtime/v1/VersionRequest.js';
export type { VersionResponse, VersionResponse__Output } from './generated/runtime/v1/VersionResponse.js';
export type { StatusRequest, StatusRequest__Output } from './generated/runtime/v1/StatusRequest.js';
export type { StatusResponse, StatusResponse__Output } from './generated/runtime/v1/StatusResponse.js';
export type { RuntimeCondition, RuntimeCondition__Output } from './generated/runtime/v1/RuntimeCondition.js';
export type {
  RunPodSandboxRequest,
  RunPodSandboxRequest__Output,
} from './generated/runtime/v1/RunPodSandboxRequest.js';
export type {
  RunPodSandboxResponse,
  RunPodSandboxResponse__Output,
} from './generated/runtime/v1/RunPodSandboxResponse.js';
export type { PodSandboxConfig, PodSandboxConfig__Output } from './generated/runtime/v1/PodSandboxConfig.js';
export type { PodSandboxMetadata, PodSandboxMetadata__Output } from './generated/runtime/v1/PodSandboxMetadata.js';
export type {
  CreateContainerRequest,
  CreateContainerRequest__Output,
} from './generated/runtime/v1/CreateContainerRequest.js';
export type {
  CreateContainerResponse,
  CreateContainerResponse__Output,
} from './generated/runtime/v1/CreateContainerResponse.js';
export type { ContainerConfig, ContainerConfig__Output } from './generated/runtime/v1/ContainerConfig.js';
export type { ContainerMetadata, ContainerMetadata__Output } from './generated/runtime/v1/ContainerMetadata.js';
export type {
  ListContainersRequest,
  ListContainersRequest__Output,
} from './generated/runtime/v1/ListContainersRequest.js';
export type {
  ListContainersResponse,
  ListContainersResponse__Output,
} from './generated/runtime/v1/ListContainersResponse.js';
export type { ContainerFilter, ContainerFilter__Output } from './generated/runtime/v1/ContainerFilter.js';
export type { Container, Container__Output } from './generated/runtime/v1/Container.js';
export type {
  ContainerStatusRequest,
  ContainerStatusRequest__Output,
} from './generated/runtime/v1/ContainerStatusRequest.js';
export type {
  ContainerStatusResponse,
  ContainerStatusResponse__Output,
} from './generated/runtime/v1/ContainerStatusResponse.js';
export type { ContainerStatus, ContainerStatus__Output } from './generated/runtime/v1/ContainerStatus.js';
export { ContainerState, type ContainerState__Output } from './generated/runtime/v1/ContainerState.js';
export { PodSandboxState, type PodSandboxState__Output } from './generated/runtime/v1/PodSandboxState.js';
