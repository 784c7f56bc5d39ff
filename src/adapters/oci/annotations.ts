import type { LinuxContainerResources__Output } from '../cri/generated/runtime/v1/LinuxContainerResources.js';
import type { PodSandboxConfig__Output } from '../cri/generated/runtime/v1/PodSandboxConfig.js';

/*
 * The runtime annotations containerd's CRI plugin writes into a spec, under the same
 * names, so that OCI hooks, NRI plugins and runtimes (kata, gVisor) that look for them
 * find them on our containers too.
 */
export const ANNOTATION_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const ANNOTATION_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';
export const ANNOTATION_SANDBOX_NAME = 'io.kubernetes.cri.sandbox-name';
export const ANNOTATION_SANDBOX_NAMESPACE = 'io.kubernetes.cri.sandbox-namespace';
export const ANNOTATION_SANDBOX_UID = 'io.kubernetes.cri.sandbox-uid';
export const ANNOTATION_SANDBOX_LOG_DIR = 'io.kubernetes.cri.sandbox-log-directory';
export const ANNOTATION_CONTAINER_NAME = 'io.kubernetes.cri.container-name';
export const ANNOTATION_IMAGE_NAME = 'io.kubernetes.cri.image-name';
export const ANNOTATION_SANDBOX_CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';
export const ANNOTATION_SANDBOX_CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
export const ANNOTATION_SANDBOX_CPU_SHARES = 'io.kubernetes.cri.sandbox-cpu-shares';
export const ANNOTATION_SANDBOX_MEMORY = 'io.kubernetes.cri.sandbox-memory';

function sandboxIdentity(sandboxId: string, sandbox: PodSandboxConfig__Output): Record<string, string> {
  return {
    [ANNOTATION_SANDBOX_ID]: sandboxId,
    [ANNOTATION_SANDBOX_NAME]: sandbox.metadata?.name ?? '',
    [ANNOTATION_SANDBOX_NAMESPACE]: sandbox.metadata?.namespace ?? '',
    [ANNOTATION_SANDBOX_UID]: sandbox.metadata?.uid ?? '',
  };
}

/**
 * A container's annotations: kubelet's as they came, then the runtime's. The runtime's
 * win on a clash: `io.kubernetes.cri.*` describes what the runtime did, so a request
 * must not be able to claim, say, to be a sandbox.
 */
export function containerAnnotations(input: {
  requested: Readonly<Record<string, string>>;
  sandboxId: string;
  sandboxConfig: PodSandboxConfig__Output;
  containerName: string;
  imageName: string;
}): Record<string, string> {
  return {
    ...input.requested,
    [ANNOTATION_CONTAINER_TYPE]: 'container',
    ...sandboxIdentity(input.sandboxId, input.sandboxConfig),
    [ANNOTATION_CONTAINER_NAME]: input.containerName,
    [ANNOTATION_IMAGE_NAME]: input.imageName,
  };
}

/** The pause container's annotations, with the pod's resources for runtimes that size a VM from them. */
export function sandboxAnnotations(sandboxId: string, config: PodSandboxConfig__Output): Record<string, string> {
  const out: Record<string, string> = {
    ...config.annotations,
    [ANNOTATION_CONTAINER_TYPE]: 'sandbox',
    ...sandboxIdentity(sandboxId, config),
    [ANNOTATION_SANDBOX_LOG_DIR]: config.logDirectory,
  };
  const r: LinuxContainerResources__Output | null | undefined = config.linux?.resources;
  if (r) {
    out[ANNOTATION_SANDBOX_CPU_PERIOD] = r.cpuPeriod || '0';
    out[ANNOTATION_SANDBOX_CPU_QUOTA] = r.cpuQuota || '0';
    out[ANNOTATION_SANDBOX_CPU_SHARES] = r.cpuShares || '0';
    out[ANNOTATION_SANDBOX_MEMORY] = r.memoryLimitInBytes || '0';
  }
  return out;
}
