/**
 * The pod network: CNI ADD / DEL / CHECK of the configured network list against a pod's
 * netns, the way containerd's CRI (through go-cni and libcni) runs it.
 *
 * - ADD runs the plugins in list order, each given the previous one's result as
 *   `prevResult`; the last result is the pod's. A failed ADD is undone at once with a
 *   DEL of the whole list, so a failed setUp leaves no IP, veth or port rule behind.
 * - DEL runs the plugins in reverse order. Plugins must treat missing state as success
 *   (spec), and a netns that is already gone is passed as an empty CNI_NETNS, so
 *   tearDown can be repeated and can run after a crash. Every plugin is tried even if
 *   one fails; the first failure is thrown.
 * - Each plugin gets `runtimeConfig` only for the capabilities it declares
 *   (`portMappings` from the CRI port mappings).
 */
import { access } from 'node:fs/promises';
import { isNetns } from '../netns/netns.js';
import {
  formatCniArgs,
  pluginStdin,
  runtimePortMappings,
  type CniCapabilityArgs,
  type CniPodRef,
  type CniPortMapping,
} from './cni-args.js';
import { loadNetworkConfig, type CniNetworkConfig } from './cni-config.js';
import { CniError, NoNetworkConfigError, type CniCommand } from './cni-errors.js';
import { DEFAULT_CNI_PLUGIN_TIMEOUT_MS, execPlugin, findPlugin } from './cni-exec.js';
import { parseCniResult, podIps, type CniInterface, type CniRoute } from './cni-result.js';

export { DEFAULT_CNI_PLUGIN_TIMEOUT_MS } from './cni-exec.js';

/** The interface name of the pod side, as kubelet and containerd use. */
export const DEFAULT_CNI_IFNAME = 'eth0';

export interface CniNetworkOptions {
  confDir: string;
  /** Plugin directory (or `:`-separated directories). */
  binDir: string;
  pluginTimeoutMs?: number;
}

/** What setUp and tearDown need to know about the pod. */
export interface PodNetworkRequest extends CniPodRef {
  netnsPath: string;
  portMappings?: CniPortMapping[];
}

/** The pod's network after ADD. */
export interface PodNetwork {
  /** The primary pod IP (IPv4 when the pod has one). */
  ip: string;
  additionalIps: string[];
  interfaces: CniInterface[];
  routes: CniRoute[];
  /** The final plugin result as printed: pass it back to tearDown/check as prevResult. */
  raw: unknown;
}

/** The CRI `NetworkReady` condition. */
export interface NetworkStatus {
  ready: boolean;
  reason: string;
  message: string;
}

/** Versions whose DEL and CHECK take the ADD result as prevResult (CHECK exists from 0.4.0). */
const hasPrevResultOnDel = (version: string): boolean => version === '0.4.0' || version.startsWith('1.');

/** The pod network of one CNI network config list. */
export class CniNetwork {
  private constructor(
    readonly config: CniNetworkConfig,
    private readonly binDir: string,
    private readonly timeoutMs: number,
  ) {}

  /** Loads the first usable config of `confDir`; throws NoNetworkConfigError or CniConfigError. */
  static async load(options: CniNetworkOptions): Promise<CniNetwork> {
    const config = await loadNetworkConfig(options.confDir);
    return new CniNetwork(config, options.binDir, options.pluginTimeoutMs ?? DEFAULT_CNI_PLUGIN_TIMEOUT_MS);
  }

  /** The network's name from its config. */
  get name(): string {
    return this.config.name;
  }

  /** CNI ADD: attaches the pod's netns and returns its IPs. */
  async setUp(req: PodNetworkRequest): Promise<PodNetwork> {
    const args = formatCniArgs(req);
    const caps = this.capabilityArgs(req);
    let prevResult: unknown;
    let last = '';
    try {
      for (const plugin of this.config.plugins) {
        last = plugin.type;
        const out = await execPlugin(
          plugin.type,
          this.invocation('ADD', req.sandboxId, req.netnsPath, args),
          pluginStdin(this.config, plugin, caps, prevResult),
        );
        if (out === undefined) throw new CniError(plugin.type, 'ADD', 'printed no result');
        prevResult = out;
      }
      let parsed;
      try {
        parsed = parseCniResult(prevResult);
      } catch (error) {
        throw new CniError(last, 'ADD', `printed an unusable result: ${(error as Error).message}`, undefined, {
          cause: error,
        });
      }
      const ips = podIps(parsed, DEFAULT_CNI_IFNAME);
      const [ip, ...additionalIps] = ips;
      if (ip === undefined) throw new CniError(last, 'ADD', `the result has no IP address for ${DEFAULT_CNI_IFNAME}`);
      return { ip, additionalIps, interfaces: parsed.interfaces, routes: parsed.routes, raw: prevResult };
    } catch (error) {
      try {
        await this.tearDown(req);
      } catch (undoError) {
        if (error instanceof CniError) {
          throw new CniError(
            error.plugin,
            error.command,
            `${error.detail}; undoing it with DEL also failed: ${(undoError as Error).message}`,
            error.code,
            { cause: undoError },
          );
        }
      }
      throw error;
    }
  }

  /**
   * CNI DEL: releases what ADD set up. Idempotent; `prevResult` is the raw result of
   * setUp when the caller kept it (spec 0.4.0+ passes it to DEL).
   */
  async tearDown(req: PodNetworkRequest, prevResult?: unknown): Promise<void> {
    const args = formatCniArgs(req);
    const caps = this.capabilityArgs(req);
    const netns = (await this.netnsStillThere(req.netnsPath)) ? req.netnsPath : '';
    const prev = prevResult !== undefined && hasPrevResultOnDel(this.config.cniVersion) ? prevResult : undefined;
    const errors: unknown[] = [];
    for (const plugin of [...this.config.plugins].reverse()) {
      try {
        await execPlugin(
          plugin.type,
          this.invocation('DEL', req.sandboxId, netns, args),
          pluginStdin(this.config, plugin, caps, prev),
        );
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  /** CNI CHECK (0.4.0+, unless the list disables it): verifies the pod's network is as ADD left it. */
  async check(req: PodNetworkRequest, prevResult: unknown): Promise<void> {
    if (!hasPrevResultOnDel(this.config.cniVersion) || this.config.disableCheck) return;
    const args = formatCniArgs(req);
    const caps = this.capabilityArgs(req);
    for (const plugin of this.config.plugins) {
      await execPlugin(
        plugin.type,
        this.invocation('CHECK', req.sandboxId, req.netnsPath, args),
        pluginStdin(this.config, plugin, caps, prevResult),
      );
    }
  }

  private capabilityArgs(req: PodNetworkRequest): CniCapabilityArgs {
    return { portMappings: runtimePortMappings(req.portMappings ?? []) };
  }

  private invocation(command: CniCommand, containerId: string, netns: string, args: string) {
    return {
      command,
      containerId,
      netns,
      ifName: DEFAULT_CNI_IFNAME,
      args,
      binDir: this.binDir,
      timeoutMs: this.timeoutMs,
    };
  }

  private async netnsStillThere(path: string): Promise<boolean> {
    if (path === '') return false;
    // /proc/<pid>/ns/net is not a mount but is a netns while the process lives.
    if (path.startsWith('/proc/'))
      return access(path).then(
        () => true,
        () => false,
      );
    return isNetns(path);
  }
}

/**
 * Whether pods can get a network: a usable config in `confDir` whose plugins are all in
 * `binDir`. Not ready is reported the way containerd words it ("cni plugin not
 * initialized"), with the cause.
 */
export async function networkReady(confDir: string, binDir: string): Promise<NetworkStatus> {
  const notReady = (cause: string): NetworkStatus => ({
    ready: false,
    reason: 'NetworkPluginNotReady',
    message: `Network plugin returns error: cni plugin not initialized: ${cause}`,
  });
  let config: CniNetworkConfig;
  try {
    config = await loadNetworkConfig(confDir);
  } catch (error) {
    return notReady(
      error instanceof NoNetworkConfigError ? `no network config found in ${confDir}` : (error as Error).message,
    );
  }
  for (const plugin of config.plugins) {
    try {
      await findPlugin(binDir, plugin.type, 'ADD');
    } catch {
      return notReady(`plugin "${plugin.type}" of ${config.file} not found in ${binDir}`);
    }
  }
  return { ready: true, reason: '', message: '' };
}
