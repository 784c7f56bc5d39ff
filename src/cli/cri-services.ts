import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { networkReady } from '../adapters/cni/cni-network.js';
import { connectContainerd } from '../adapters/containerd/containerd-api.js';
import { ContainerdHealth } from '../adapters/containerd/containerd-health.js';
import { imageServiceV1, imageServiceV1alpha2, runtimeServiceV1, runtimeServiceV1alpha2 } from '../adapters/cri/cri-definition.js';
import { criService, runtimeInfoHandlers, type RuntimeInfoDeps } from '../adapters/cri/runtime-info.js';
import type { SocketService } from '../adapters/grpc/socket-server.js';
import type { Config } from './config.js';

/** The version in package.json (this file is compiled to dist/src/cli/). */
export function packageVersion(): string {
  const path = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

/**
 * The CRI services, v1 and v1alpha2, over one containerd connection. containerd need
 * not be up: the channel connects lazily, and Status reports RuntimeReady=false with
 * the reason until it answers.
 */
export function createCriServices(config: Config, logger: Logger): { services: SocketService[]; close: () => void } {
  const api = connectContainerd({ address: config.containerd.address, namespace: config.containerd.namespace });
  const health = new ContainerdHealth(api);
  const runtimeVersion = packageVersion();
  const deps = (apiVersion: RuntimeInfoDeps['apiVersion']): RuntimeInfoDeps => ({
    apiVersion,
    runtimeVersion,
    runtimeReady: () => health.check(),
    networkReady: () => networkReady(config.cni.confDir, config.cni.binDir),
    effectiveConfig: () => config,
  });
  void health.check().then((h) => {
    if (h.ready) logger.info({ containerd: config.containerd.address, version: h.version, namespace: config.containerd.namespace }, 'containerd answers');
    else logger.warn({ containerd: config.containerd.address, reason: h.message }, 'containerd is not reachable yet; RuntimeReady=false until it is');
  });
  return {
    services: [
      criService(runtimeServiceV1, runtimeInfoHandlers(deps('v1'))),
      criService(imageServiceV1, {}),
      criService(runtimeServiceV1alpha2, runtimeInfoHandlers(deps('v1alpha2'))),
      criService(imageServiceV1alpha2, {}),
    ],
    close: () => api.close(),
  };
}
