import { existsSync, readdirSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseMountInfo } from '../netns/netns.js';
import { ALL_CAPABILITIES, heldCapabilities } from './capabilities.js';
import type { HostDevice, HostFacts, HostPropagation } from './spec-input.js';

/*
 * What spec generation needs to know about this host, read from /proc, /sys and /dev.
 * Read once at startup (readHostFacts) except what depends on the request's paths
 * (hostPropagation, deviceInfo), which is read per call.
 */

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function deviceOf(path: string, st: Stats): HostDevice | undefined {
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : st.isFIFO() ? 'p' : undefined;
  if (type === undefined) return undefined;
  // st_rdev: glibc's encoding of major and minor.
  const rdev = st.rdev;
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  return { path, type, major, minor, fileMode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** The device nodes at `hostPath` (every one below it for a directory); [] when none. */
export function deviceInfo(hostPath: string): HostDevice[] {
  let real: string;
  let st: Stats;
  try {
    real = realpathSync(hostPath);
    st = statSync(real);
  } catch {
    return [];
  }
  if (!st.isDirectory()) {
    const device = deviceOf(real, st);
    return device ? [device] : [];
  }
  const out: HostDevice[] = [];
  for (const entry of readdirSync(real, { withFileTypes: true })) {
    // /dev/pts and /dev/shm are mounted for every container already; /dev/mqueue too.
    if (entry.isDirectory() && ['pts', 'shm', 'mqueue', 'fd'].includes(entry.name)) continue;
    if (entry.isSymbolicLink()) continue;
    out.push(...deviceInfo(join(real, entry.name)));
  }
  return out;
}

/** Propagation of the mount holding `hostPath` (the longest mount point that contains it). */
export function hostPropagation(hostPath: string): HostPropagation {
  const mounts = parseMountInfo(read('/proc/self/mountinfo') ?? '');
  let best: { mountPoint: string; optional: string } | undefined;
  for (const m of mounts) {
    const inside =
      hostPath === m.mountPoint || hostPath.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : `${m.mountPoint}/`);
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  const optional = best?.optional ?? '';
  return { shared: /\bshared:/.test(optional), slave: /\bmaster:/.test(optional) };
}

/** Reads the host facts once. */
export function readHostFacts(): HostFacts {
  const status = read('/proc/self/status') ?? '';
  // Without a readable status, every capability the kernel knows (what runc would then be asked for).
  const lastCap = Number(read('/proc/sys/kernel/cap_last_cap')?.trim() ?? ALL_CAPABILITIES.length - 1);
  const kernelCapabilities = ALL_CAPABILITIES.slice(0, Math.min(lastCap + 1, ALL_CAPABILITIES.length));
  const cgroupVersion = existsSync('/sys/fs/cgroup/cgroup.controllers') ? 2 : 1;
  return {
    arch: process.arch,
    cgroupVersion,
    apparmor: read('/sys/module/apparmor/parameters/enabled')?.trim() === 'Y',
    selinux: existsSync('/sys/fs/selinux/enforce'),
    seccomp: /^Seccomp:\s*\d/m.test(status),
    swapControllerAvailable:
      cgroupVersion === 2 ? true : existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'),
    hugetlbControllerAvailable: existsSync(
      cgroupVersion === 2 ? '/sys/fs/cgroup/cgroup.controllers' : '/sys/fs/cgroup/hugetlb',
    ),
    heldCapabilities: heldCapabilities(status) ?? kernelCapabilities,
    devices: deviceInfo('/dev'),
    currentOomScoreAdj: Number(read('/proc/self/oom_score_adj')?.trim() ?? 0),
    hostname: hostname(),
  };
}
