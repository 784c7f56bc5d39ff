/**
 * Reading a plugin's result (spec 0.3.x, 0.4.0, 1.0.0 shape: interfaces, ips, routes,
 * dns) and picking the pod IPs from it, as containerd does: the addresses on the pod's
 * interface inside the sandbox, IPv4 first, then the others.
 */
import { isIP } from 'node:net';

/** An interface a plugin created or knows about; `sandbox` is set for ones in the pod netns. */
export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

/** An address assigned to the pod. */
export interface CniIpConfig {
  /** With prefix length, e.g. `10.231.4.2/24`. */
  address: string;
  /** The bare address. */
  ip: string;
  family: 4 | 6;
  /** Index into `interfaces`, when the plugin said which. */
  interface?: number;
  gateway?: string;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

/** A parsed plugin result; `raw` is the JSON as printed (chained as the next prevResult). */
export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns?: unknown;
  raw: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** Parses a result; throws Error with a message saying what is wrong (the caller wraps it). */
export function parseCniResult(json: unknown): CniResult {
  if (!isObject(json)) throw new Error('the result is not a JSON object');
  const interfaces: CniInterface[] = [];
  for (const [i, it] of (Array.isArray(json.interfaces) ? json.interfaces : []).entries()) {
    if (!isObject(it) || !str(it.name)) throw new Error(`interfaces[${i}] has no name`);
    interfaces.push({
      name: it.name as string,
      ...(str(it.mac) ? { mac: it.mac as string } : {}),
      ...(str(it.sandbox) ? { sandbox: it.sandbox as string } : {}),
    });
  }
  const ips: CniIpConfig[] = [];
  for (const [i, entry] of (Array.isArray(json.ips) ? json.ips : []).entries()) {
    if (!isObject(entry) || !str(entry.address)) throw new Error(`ips[${i}] has no address`);
    const address = entry.address as string;
    const ip = address.split('/')[0] ?? '';
    const family = isIP(ip);
    if (family !== 4 && family !== 6) throw new Error(`ips[${i}].address "${address}" is not an IP address`);
    ips.push({
      address,
      ip,
      family,
      ...(typeof entry.interface === 'number' ? { interface: entry.interface } : {}),
      ...(str(entry.gateway) ? { gateway: entry.gateway as string } : {}),
    });
  }
  const routes: CniRoute[] = [];
  for (const [i, r] of (Array.isArray(json.routes) ? json.routes : []).entries()) {
    if (!isObject(r) || !str(r.dst)) throw new Error(`routes[${i}] has no dst`);
    routes.push({ dst: r.dst as string, ...(str(r.gw) ? { gw: r.gw as string } : {}) });
  }
  return {
    cniVersion: str(json.cniVersion) ?? '',
    interfaces,
    ips,
    routes,
    ...(json.dns !== undefined ? { dns: json.dns } : {}),
    raw: json,
  };
}

/**
 * The pod IPs in `result`: addresses on interface `ifName` inside a sandbox; when the
 * plugin tied no address to an interface, all of them. IPv4 first, then the rest, each
 * in the plugin's order, without duplicates.
 */
export function podIps(result: CniResult, ifName: string): string[] {
  const onPodInterface = (ip: CniIpConfig): boolean => {
    if (ip.interface === undefined) return false;
    const it = result.interfaces[ip.interface];
    return it !== undefined && it.name === ifName && it.sandbox !== undefined;
  };
  const tied = result.ips.filter(onPodInterface);
  const chosen = tied.length > 0 ? tied : result.ips.filter((ip) => ip.interface === undefined);
  const ordered = [...chosen.filter((ip) => ip.family === 4), ...chosen.filter((ip) => ip.family !== 4)];
  return [...new Set(ordered.map((ip) => ip.ip))];
}
