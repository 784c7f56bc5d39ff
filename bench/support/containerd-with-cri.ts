import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { containerdConfig, startContainerd, type PrivateContainerd } from '../../test/support/containerd.js';

/*
 * A private containerd for benchmarks only: the test harness's (own root, state dir and
 * socket under one temp dir, the same cleanup guarantees), but with containerd's
 * built-in CRI plugin ENABLED, so one containerd serves both containerd's CRI (namespace
 * `k8s.io`, on containerd's own gRPC socket) and cri-ledger (namespace `cri-ledger`).
 * Tests never use this: there the CRI plugin stays disabled.
 */

/** containerd's CRI plugin serves its pods in this containerd namespace. */
export const CONTAINERD_CRI_NAMESPACE = 'k8s.io';
export const CRI_PLUGIN = 'io.containerd.grpc.v1.cri';

export interface CriPluginOptions {
  /**
   * The CRI plugin's `registry.config_path`: a certs.d dir of `<host:port>/hosts.toml`
   * files, read at each pull. Unset, the plugin pulls over HTTPS from the standard hosts.
   */
  registryConfigPath?: string;
  /**
   * containerd's state dir (shim sockets, FIFOs, the CRI's sandbox files) on a tmpfs, as
   * `/run/containerd` is on a node. Unmounted by stop() with the rest under its temp dir.
   */
  stateOnTmpfs?: boolean;
}

/**
 * The test harness's configuration with the CRI plugin taken off the disabled list and
 * configured to stay inside `dir`: an empty CNI conf dir (host-network pods only),
 * overlayfs, and `restrict_oom_score_adj` because this machine lacks CAP_SYS_RESOURCE.
 */
export function containerdWithCriConfig(dir: string, options: CriPluginOptions = {}): string {
  const quote = (s: string): string => JSON.stringify(s);
  const base = containerdConfig(dir);
  const disabled = /^disabled_plugins = \[.*\]$/m;
  if (!disabled.test(base))
    throw new Error(
      'containerdConfig no longer has a one-line disabled_plugins: update bench/support/containerd-with-cri.ts',
    );
  const withCri = base.replace(disabled, (line) =>
    line
      .replace(`${quote(CRI_PLUGIN)}, `, '')
      .replace(`, ${quote(CRI_PLUGIN)}`, '')
      .replace(quote(CRI_PLUGIN), ''),
  );
  if (withCri.includes(quote(CRI_PLUGIN))) throw new Error(`could not enable ${CRI_PLUGIN} in the test config`);
  return [
    withCri.trimEnd(),
    '',
    `[plugins.${quote(CRI_PLUGIN)}]`,
    '  sandbox_image = "registry.k8s.io/pause:3.6"',
    '  restrict_oom_score_adj = true',
    '  enable_selinux = false',
    `[plugins.${quote(CRI_PLUGIN)}.cni]`,
    `  bin_dir = ${quote(join(dir, 'cni', 'bin'))}`,
    `  conf_dir = ${quote(join(dir, 'cni', 'net.d'))}`,
    `[plugins.${quote(CRI_PLUGIN)}.containerd]`,
    '  snapshotter = "overlayfs"',
    ...(options.registryConfigPath
      ? [`[plugins.${quote(CRI_PLUGIN)}.registry]`, `  config_path = ${quote(options.registryConfigPath)}`]
      : []),
    '',
  ].join('\n');
}

/** Starts a private containerd with its CRI plugin enabled; resolves once it answers Version. */
export function startContainerdWithCri(options: CriPluginOptions = {}): Promise<PrivateContainerd> {
  return startContainerd({
    config: (dir) => containerdWithCriConfig(dir, options),
    prepare: (dir) => {
      for (const d of [join(dir, 'cni', 'bin'), join(dir, 'cni', 'net.d')]) mkdirSync(d, { recursive: true });
      if (options.stateOnTmpfs) mountTmpfs(join(dir, 'state'));
    },
    // containerd keeps serving when a plugin fails to load; a CRI that did not load would
    // make every containerd-CRI call UNIMPLEMENTED, so say why up front.
    verify: (log) => {
      const failed = /failed to load plugin io\.containerd\.grpc\.v1\.cri.*/.exec(log);
      if (failed) throw new Error(`containerd's CRI plugin did not load: ${failed[0]}`);
    },
  });
}

/** Mounts a fresh tmpfs at `dir` (made if missing), traversable by root only, as `/run/containerd` is. */
export function mountTmpfs(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0711', 'tmpfs', dir]);
}
