import { readFile } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { HostsConfigError } from './registry-errors.js';
import { parseTomlSubset, type TomlTable, type TomlValue } from './toml-subset.js';

/*
 * Which URLs serve a registry, read from containerd's certs.d layout:
 * `<configDir>/<registry>/hosts.toml` (else `<configDir>/_default/hosts.toml`), its
 * `[host."<url>"]` tables in file order, then `server`. Without a file, the registry's
 * standard endpoint. The same rules as containerd's config/hosts.go, minus client
 * certificates, headers and override_path.
 */

export type HostCapability = 'pull' | 'resolve' | 'push';
const ALL_CAPABILITIES: readonly HostCapability[] = ['pull', 'resolve', 'push'];

/** One endpoint a registry's content may be fetched from. */
export interface RegistryHost {
  /** The URL as configured, without `/v2`: `https://registry-1.docker.io`; used in messages and as origin. */
  origin: string;
  /** The API base, ending in `/v2`. */
  api: string;
  capabilities: readonly HostCapability[];
  /** Do not verify the server's TLS certificate. */
  skipVerify: boolean;
  /** Extra CA certificate files (PEM) trusted for this host, besides the system roots. */
  ca: readonly string[];
}

/** docker.io's API is not served at docker.io. */
export function defaultServer(registry: string): string {
  return registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v);
}

function host(file: string, url: string, table: TomlTable, where: string): RegistryHost {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `https://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    throw new HostsConfigError(file, `${where}: "${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new HostsConfigError(file, `${where}: "${url}" is neither http nor https`);
  const origin = withScheme.replace(/\/+$/, '');
  const api = parsed.pathname.replace(/\/+$/, '').endsWith('/v2') ? origin : `${origin}/v2`;

  const caps = table.capabilities;
  let capabilities = ALL_CAPABILITIES;
  if (caps !== undefined) {
    if (
      !Array.isArray(caps) ||
      !caps.every(
        (c): c is HostCapability => typeof c === 'string' && (ALL_CAPABILITIES as readonly string[]).includes(c),
      )
    ) {
      throw new HostsConfigError(file, `${where}: capabilities must be a list of "pull", "resolve", "push"`);
    }
    capabilities = caps;
  }
  const skip = table.skip_verify ?? false;
  if (typeof skip !== 'boolean') throw new HostsConfigError(file, `${where}: skip_verify must be true or false`);
  const rawCa = table.ca ?? [];
  const caList = typeof rawCa === 'string' ? [rawCa] : rawCa;
  if (!Array.isArray(caList) || !caList.every((c): c is string => typeof c === 'string')) {
    throw new HostsConfigError(file, `${where}: ca must be a path or a list of paths`);
  }
  // As in containerd, a relative CA path is relative to the hosts.toml's directory.
  const ca = caList.map((c) => resolvePath(dirname(file), c));
  return { origin, api, capabilities, skipVerify: skip, ca };
}

/**
 * The hosts for `registry`, in the order to try them, from a parsed hosts.toml (or none).
 * Pure: `file` only names the config in messages and anchors relative CA paths.
 */
export function hostsFromConfig(registry: string, config: TomlTable | undefined, file: string): RegistryHost[] {
  if (!config) return [host(file, defaultServer(registry), {}, 'default')];
  const hosts: RegistryHost[] = [];
  const tables = config.host ?? {};
  if (!isTable(tables)) throw new HostsConfigError(file, '"host" must be tables: [host."https://…"]');
  for (const [url, table] of Object.entries(tables)) {
    if (!isTable(table)) throw new HostsConfigError(file, `host."${url}" must be a table`);
    hosts.push(host(file, url, table, `[host."${url}"]`));
  }
  const server = config.server ?? defaultServer(registry);
  if (typeof server !== 'string') throw new HostsConfigError(file, 'server must be a URL string');
  // The top-level capabilities, skip_verify and ca describe the server.
  hosts.push(host(file, server, config, 'server'));
  return hosts;
}

/** Reads `<configDir>/<registry>/hosts.toml`, else `_default/hosts.toml`; standard endpoint when neither exists. */
export async function loadRegistryHosts(registry: string, configDir: string | undefined): Promise<RegistryHost[]> {
  if (configDir === undefined) return hostsFromConfig(registry, undefined, '(no config dir)');
  for (const dir of [registry, '_default']) {
    const file = join(configDir, dir, 'hosts.toml');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new HostsConfigError(file, `cannot read it: ${(error as Error).message}`, { cause: error });
    }
    return hostsFromConfig(registry, parseTomlSubset(text, file), file);
  }
  return hostsFromConfig(registry, undefined, join(configDir, registry, 'hosts.toml'));
}
