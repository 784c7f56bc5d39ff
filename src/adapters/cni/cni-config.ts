/**
 * Network config loading, as containerd (go-cni / libcni) does it: the files of the
 * conf dir ending in `.conflist`, `.conf` or `.json`, in byte order of their names; the
 * first usable one is the pod network. A single-plugin `.conf` becomes a list of one.
 * A list with no plugins is skipped; a malformed file before the first usable one is an
 * error (as in go-cni), so a typo is not silently replaced by the next file.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CniConfigError, NoNetworkConfigError } from './cni-errors.js';

/** The file name endings that count as network configs. */
export const CNI_CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'] as const;

/** The CNI spec versions whose result format this runtime reads. */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

/** One plugin's config, kept as written (plugins read their own keys). */
export type CniPluginConfig = Record<string, unknown> & { type: string; capabilities?: Record<string, boolean> };

/** A network config list, normalised from a `.conflist` or a single `.conf`. */
export interface CniNetworkConfig {
  file: string;
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  plugins: CniPluginConfig[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The names in `names` that are network config files, in the order they are tried. */
export function configFileOrder(names: readonly string[]): string[] {
  return names
    .filter((n) => CNI_CONFIG_EXTENSIONS.some((ext) => n.endsWith(ext)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkPlugin(file: string, plugin: unknown, where: string): CniPluginConfig {
  if (!isObject(plugin)) throw new CniConfigError(file, `${where} is not an object`);
  if (typeof plugin.type !== 'string' || plugin.type === '') throw new CniConfigError(file, `${where} has no "type"`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(plugin.type)) {
    throw new CniConfigError(file, `${where} has type "${plugin.type}", which is not a plugin binary name`);
  }
  if (plugin.capabilities !== undefined && !isObject(plugin.capabilities)) {
    throw new CniConfigError(file, `${where} "capabilities" is not an object`);
  }
  return plugin as CniPluginConfig;
}

/**
 * Parses one config file's text. Returns undefined for a list without plugins (skipped,
 * as libcni does); throws CniConfigError for anything else that is unusable.
 */
export function parseNetworkConfig(file: string, text: string): CniNetworkConfig | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CniConfigError(file, `not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!isObject(json)) throw new CniConfigError(file, 'not a JSON object');
  if (typeof json.name !== 'string' || json.name === '') throw new CniConfigError(file, 'no "name"');
  if (typeof json.cniVersion !== 'string') throw new CniConfigError(file, 'no "cniVersion"');
  if (!(SUPPORTED_CNI_VERSIONS as readonly string[]).includes(json.cniVersion)) {
    throw new CniConfigError(
      file,
      `cniVersion ${json.cniVersion} is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(', ')})`,
    );
  }
  const isList = file.endsWith('.conflist') || json.plugins !== undefined;
  if (!isList) {
    const { cniVersion, name } = json;
    return { file, name, cniVersion, disableCheck: false, plugins: [checkPlugin(file, json, 'the config')] };
  }
  if (!Array.isArray(json.plugins)) throw new CniConfigError(file, '"plugins" is not a list');
  if (json.plugins.length === 0) return undefined;
  return {
    file,
    name: json.name,
    cniVersion: json.cniVersion,
    disableCheck: json.disableCheck === true,
    plugins: json.plugins.map((p, i) => checkPlugin(file, p, `plugin ${i}`)),
  };
}

/** Loads the first usable network config of `confDir`; NoNetworkConfigError if none. */
export async function loadNetworkConfig(confDir: string): Promise<CniNetworkConfig> {
  let names: string[];
  try {
    names = (await readdir(confDir, { withFileTypes: true }))
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => e.name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NoNetworkConfigError(confDir);
    throw new CniConfigError(confDir, 'cannot read the directory', { cause: error });
  }
  for (const name of configFileOrder(names)) {
    const file = join(confDir, name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new CniConfigError(file, 'cannot read the file', { cause: error });
    }
    const config = parseNetworkConfig(file, text);
    if (config) return config;
  }
  throw new NoNetworkConfigError(confDir);
}
