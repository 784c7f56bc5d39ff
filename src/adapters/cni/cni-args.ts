/**
 * The pure parts of a plugin invocation: CNI_ARGS, the runtimeConfig built from the
 * capabilities a plugin declares, and the stdin config of each plugin of a list.
 */
import { InvalidArgumentError } from '../../domain/errors.js';
import type { CniNetworkConfig, CniPluginConfig } from './cni-config.js';

/** The pod a network operation is for, as kubelet identifies it. */
export interface CniPodRef {
  sandboxId: string;
  podName: string;
  podNamespace: string;
  podUid: string;
}

/** A CRI port mapping (protocol as CRI names it: TCP, UDP, SCTP, any case). */
export interface CniPortMapping {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIp?: string;
}

/** A port mapping in the shape portmap's `portMappings` capability reads. */
export interface CniRuntimePortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

/**
 * `CNI_ARGS` for a pod, the keys kubelet's network plugins read. Values with `;` or `=`
 * would be split by every plugin's parser, so they are refused.
 */
export function formatCniArgs(pod: CniPodRef): string {
  const pairs: Array<[string, string, keyof CniPodRef]> = [
    ['K8S_POD_NAMESPACE', pod.podNamespace, 'podNamespace'],
    ['K8S_POD_NAME', pod.podName, 'podName'],
    ['K8S_POD_INFRA_CONTAINER_ID', pod.sandboxId, 'sandboxId'],
    ['K8S_POD_UID', pod.podUid, 'podUid'],
  ];
  for (const [, value, field] of pairs) {
    if (/[;=\0]/.test(value))
      throw new InvalidArgumentError(field, `"${value}" contains ";", "=" or NUL, which CNI_ARGS cannot carry`);
  }
  return ['IgnoreUnknown=1', ...pairs.map(([k, v]) => `${k}=${v}`)].join(';');
}

/**
 * The mappings handed to portmap: those with a host port (kubelet sends hostPort 0 for
 * "no host port"), protocol lower-cased as portmap expects, hostIP only when set.
 */
export function runtimePortMappings(mappings: readonly CniPortMapping[]): CniRuntimePortMapping[] {
  return mappings
    .filter((m) => m.hostPort > 0)
    .map((m) => ({
      hostPort: m.hostPort,
      containerPort: m.containerPort,
      protocol: (m.protocol || 'tcp').toLowerCase(),
      ...(m.hostIp ? { hostIP: m.hostIp } : {}),
    }));
}

/** The capability values the runtime can supply, by capability name. */
export type CniCapabilityArgs = Record<string, unknown>;

/** The runtimeConfig for `plugin`: only the capabilities it declares true, only those supplied. */
export function runtimeConfigFor(
  plugin: CniPluginConfig,
  args: CniCapabilityArgs,
): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const [name, declared] of Object.entries(plugin.capabilities ?? {})) {
    if (declared === true && args[name] !== undefined) out[name] = args[name];
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * The stdin config of one plugin of `network`: its own keys, the list's name and
 * version, `runtimeConfig` for its declared capabilities (replacing any written one,
 * as libcni does), and `prevResult` when there is one.
 */
export function pluginStdin(
  network: CniNetworkConfig,
  plugin: CniPluginConfig,
  capabilityArgs: CniCapabilityArgs,
  prevResult: unknown,
): Record<string, unknown> {
  const { runtimeConfig: _written, prevResult: _prev, ...own } = plugin;
  const stdin: Record<string, unknown> = { ...own, name: network.name, cniVersion: network.cniVersion };
  const runtimeConfig = runtimeConfigFor(plugin, capabilityArgs);
  if (runtimeConfig) stdin.runtimeConfig = runtimeConfig;
  if (prevResult !== undefined) stdin.prevResult = prevResult;
  return stdin;
}
