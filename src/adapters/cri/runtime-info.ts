import type { sendUnaryData, ServerUnaryCall, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { toServiceError } from '../grpc/status.js';
import { unimplementedHandlers } from './cri-definition.js';
import type { RuntimeConfigResponse } from './generated/runtime/v1/RuntimeConfigResponse.js';
import type { StatusRequest__Output } from './generated/runtime/v1/StatusRequest.js';
import type { StatusResponse } from './generated/runtime/v1/StatusResponse.js';
import type { VersionResponse } from './generated/runtime/v1/VersionResponse.js';

/** The kubelet-facing API version string CRI runtimes report in VersionResponse.version. */
export const KUBELET_API_VERSION = '0.1.0';
export const RUNTIME_NAME = 'cri-ledger';

/** A CRI condition as RuntimeReady and NetworkReady report it. */
export interface ConditionProbe {
  ready: boolean;
  reason: string;
  message: string;
}

export interface RuntimeInfoDeps {
  /** `v1` or `v1alpha2`: the API the service these handlers serve is registered under. */
  apiVersion: 'v1' | 'v1alpha2';
  runtimeVersion: string;
  runtimeReady: () => Promise<ConditionProbe>;
  networkReady: () => Promise<ConditionProbe>;
  /** The effective configuration, shown by `Status` with verbose set (as containerd's `config`). */
  effectiveConfig: () => unknown;
  /** The pod CIDR kubelet last gave with UpdateRuntimeConfig ('' if never). */
  podCidr: () => Promise<string>;
  /** How containers' cgroups are placed; newer kubelets read it from RuntimeConfig. */
  cgroupDriver?: 'cgroupfs' | 'systemd';
}

type Unary<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

/** Wraps an async handler: a thrown error becomes its status through the one mapping place. */
export function unary<Req, Res>(
  handler: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): Unary<Req, Res> {
  return (call, callback) => {
    handler(call.request, call).then(
      (response) => callback(null, response),
      (error: unknown) => callback(toServiceError(error)),
    );
  };
}

/** Version, Status and RuntimeConfig: what kubelet asks first, and keeps polling. */
export function runtimeInfoHandlers(deps: RuntimeInfoDeps): UntypedServiceImplementation {
  return {
    Version: unary<unknown, VersionResponse>(async () => ({
      version: KUBELET_API_VERSION,
      runtimeName: RUNTIME_NAME,
      runtimeVersion: deps.runtimeVersion,
      runtimeApiVersion: deps.apiVersion,
    })),
    Status: unary<StatusRequest__Output, StatusResponse>(async (request) => {
      const [runtime, network] = await Promise.all([deps.runtimeReady(), deps.networkReady()]);
      const info: Record<string, string> = request.verbose
        ? { config: JSON.stringify(deps.effectiveConfig()), podCidr: await deps.podCidr() }
        : {};
      return {
        status: {
          conditions: [
            { type: 'RuntimeReady', status: runtime.ready, reason: runtime.reason, message: runtime.message },
            { type: 'NetworkReady', status: network.ready, reason: network.reason, message: network.message },
          ],
        },
        info,
      };
    }),
    // Newer kubelets (KubeletCgroupDriverFromCRI) take their cgroup driver from here.
    RuntimeConfig: unary<unknown, RuntimeConfigResponse>(async () => ({
      linux: { cgroupDriver: deps.cgroupDriver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' },
    })),
  };
}

/** A CRI service: the implemented handlers over UNIMPLEMENTED placeholders for the rest. */
export function criService(
  definition: ServiceDefinition,
  implemented: UntypedServiceImplementation,
): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  return { definition, implementation: { ...unimplementedHandlers(definition), ...implemented } };
}
