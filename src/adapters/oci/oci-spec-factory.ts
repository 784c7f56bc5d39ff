import { createHash } from 'node:crypto';
import type {
  MountSource,
  ContainerSpecInput as PortInput,
  ResolvedImage,
  SandboxSpecFactory,
  SpecFactory,
} from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { checkLogPathOnHost, readLocalhostProfile, resolveMountSource } from '../fs/host-paths.js';
import type { ContainerConfig__Output } from '../cri/generated/runtime/v1/ContainerConfig.js';
import type { PodSandboxConfig__Output } from '../cri/generated/runtime/v1/PodSandboxConfig.js';
import { buildContainerSpec } from './container-spec.js';
import { buildSandboxSpec } from './sandbox-spec.js';
import { deviceInfo, hostPropagation } from './host-facts.js';
import { imageVolumeDirs } from './image-volumes.js';
import { containerLogPath } from './log-path.js';
import type { HostFacts, SandboxFiles, SpecOptions } from './spec-input.js';

export interface OciSpecFactoryOptions {
  host: HostFacts;
  options: SpecOptions;
  /** Where RunPodSandbox wrote the pod's hostname, hosts, resolv.conf and /dev/shm. */
  sandboxFiles: (sandboxId: string, hostIpc?: boolean) => SandboxFiles;
  /** Skip image VOLUMEs entirely (containerd's ignore_image_defined_volumes). */
  ignoreImageDefinedVolumes?: boolean;
}

/**
 * The CreateContainer command's SpecFactory: reads what the pure spec builder needs
 * from the host (mount propagation, device nodes, localhost seccomp profiles, resolved
 * host paths) and hands the rest through.
 */
export class OciSpecFactory implements SpecFactory, SandboxSpecFactory {
  constructor(private readonly o: OciSpecFactoryOptions) {}

  async containerSpec(input: PortInput) {
    const config = input.config as ContainerConfig__Output;
    const sandboxConfig = input.sandboxConfig as PodSandboxConfig__Output | null;
    if (sandboxConfig === null || sandboxConfig === undefined)
      throw new InvalidArgumentError('sandbox_config', 'must be set');
    const volumes = imageVolumeDirs(
      input.image.config.volumes,
      config.mounts ?? [],
      input.dirs.root,
      this.o.ignoreImageDefinedVolumes ?? false,
    );
    const logPath = containerLogPath(sandboxConfig.logDirectory ?? '', config.logPath ?? '');
    checkLogPathOnHost(sandboxConfig.logDirectory ?? '', logPath, 'config.log_path');
    const mountSources: MountSource[] = [];
    const resolveHostPath = (hostPath: string, field: string): string => {
      const { path, pin } = resolveMountSource(hostPath, field);
      mountSources.push(pin);
      return path;
    };
    const result = buildContainerSpec({
      containerId: input.containerId,
      sandboxId: input.sandbox.id,
      config,
      sandboxConfig,
      image: { name: input.image.name, config: input.image.config, ...input.userFiles },
      sandbox: {
        pid: input.sandbox.pid,
        netnsPath: input.sandbox.hostNetwork ? '' : input.sandbox.netnsPath,
        files: this.o.sandboxFiles(
          input.sandbox.id,
          sandboxConfig.linux?.securityContext?.namespaceOptions?.ipc === 'NODE',
        ),
      },
      imageVolumes: volumes,
      resolveHostPath: resolveHostPath,
      hostPropagation,
      deviceInfo,
      loadLocalhostProfile,
      host: this.o.host,
      options: this.o.options,
    });
    return {
      spec: result.spec as unknown as Record<string, unknown>,
      specDigest: ociSpecDigest(result.spec),
      volumeHostPaths: volumes.map((v) => v.hostPath),
      mountSources,
      logPath,
      notes: result.notes,
    };
  }

  async sandboxSpec(input: { sandboxId: string; config: unknown; image: ResolvedImage; netnsPath: string }) {
    const config = input.config as PodSandboxConfig__Output;
    const hostIpc = config.linux?.securityContext?.namespaceOptions?.ipc === 'NODE';
    const result = buildSandboxSpec({
      sandboxId: input.sandboxId,
      config,
      image: { name: input.image.name, config: input.image.config },
      netnsPath: input.netnsPath,
      files: this.o.sandboxFiles(input.sandboxId, hostIpc),
      loadLocalhostProfile,
      host: this.o.host,
      options: this.o.options,
    });
    return {
      spec: result.spec as unknown as Record<string, unknown>,
      specDigest: ociSpecDigest(result.spec),
      notes: result.notes,
    };
  }
}

/**
 * `sha256:` of a spec's JSON: what specDigest in src/commands/spec-digest.ts computes with
 * Web Crypto (the core imports no node modules), here synchronously: Web Crypto's digest
 * is a trip through the thread pool, on CreateContainer's and RunPodSandbox's path.
 */
export function ociSpecDigest(spec: object): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(spec)).digest('hex')}`;
}

function loadLocalhostProfile(path: string): string {
  return readLocalhostProfile(path, 'linux.security_context.seccomp');
}
