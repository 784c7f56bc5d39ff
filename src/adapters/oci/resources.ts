import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';
import { plainText } from '../../domain/text.js';
import type { LinuxContainerResources__Output } from '../cri/generated/runtime/v1/LinuxContainerResources.js';
import type { OciResources } from './oci-spec.js';
import { int64Field } from './values.js';

/** The pause container's oom_score_adj (containerd's): the last thing in the pod the kernel kills. */
export const DEFAULT_SANDBOX_OOM_SCORE_ADJ = -998;
/** The pause container's CPU shares: it only sleeps, so the minimum weight cgroup v1 accepts. */
export const DEFAULT_SANDBOX_CPU_SHARES = 2;
/** The systemd scope prefix in `slice:prefix:name` cgroup paths. */
export const SYSTEMD_CGROUP_PREFIX = 'cri-ledger';

const OOM_MIN = -1000;
const OOM_MAX = 1000;

/**
 * The oom_score_adj to put in the spec. Lowering one's own oom_score_adj needs
 * CAP_SYS_RESOURCE, which these machines lack, so runc would fail on a value below the
 * current one; with `restrict`, clamp to max(requested, current) as containerd's
 * restrict_oom_score_adj does.
 */
export function oomScoreAdj(requested: number, restrict: boolean, current: number, field: string): number {
  if (!Number.isInteger(requested) || requested < OOM_MIN || requested > OOM_MAX) {
    throw new InvalidArgumentError(field, `${requested} is outside ${OOM_MIN}..${OOM_MAX}`);
  }
  return restrict ? Math.max(requested, current) : requested;
}

export interface ResourceHost {
  cgroupVersion: 1 | 2;
  swapControllerAvailable: boolean;
  hugetlbControllerAvailable: boolean;
}

/**
 * CPU, memory, hugepages and unified settings from the request (containerd's
 * WithResources): a zero means "not set". The swap limit equals the memory limit unless
 * one is given, so a container cannot use swap to go past its memory limit; it is set only
 * where the kernel has the swap controller (runc fails on a swap limit it cannot write).
 */
/** cgroup v1's cpu.cfs_period_us bounds (1 ms .. 1 s) and the smallest quota, in µs. */
export const CPU_PERIOD_MIN = 1_000;
export const CPU_PERIOD_MAX = 1_000_000;
export const CPU_QUOTA_MIN = 1_000;
/** cpu.shares' maximum. */
export const CPU_SHARES_MAX = 262_144;
/** The smallest memory limit runc accepts (6 MiB in runc 1.1 is the documented floor; 4 MiB is the kernel's practical one). */
export const MEMORY_LIMIT_MIN = 4 * 1024 * 1024;

export function containerResources(
  r: LinuxContainerResources__Output | null,
  host: ResourceHost,
  base: OciResources,
  notes: string[],
): OciResources {
  if (r === null) return base;
  const f = (name: string): string => `config.linux.resources.${name}`;
  const out: OciResources = { ...base };
  const cpu: NonNullable<OciResources['cpu']> = {};
  const period = int64Field(r.cpuPeriod, f('cpu_period'));
  const quota = int64Field(r.cpuQuota, f('cpu_quota'));
  const shares = int64Field(r.cpuShares, f('cpu_shares'));
  if (period < 0) throw new InvalidArgumentError(f('cpu_period'), 'must not be negative');
  if (shares < 0) throw new InvalidArgumentError(f('cpu_shares'), 'must not be negative');
  // The kernel's own bounds: absurd values are refused here, not by runc half-way through.
  if (period !== 0 && (period < CPU_PERIOD_MIN || period > CPU_PERIOD_MAX))
    throw new InvalidArgumentError(f('cpu_period'), `${period} is outside ${CPU_PERIOD_MIN}..${CPU_PERIOD_MAX} µs`);
  if (quota < -1 || (quota > 0 && quota < CPU_QUOTA_MIN))
    throw new InvalidArgumentError(
      f('cpu_quota'),
      `${quota} is not -1 (no limit), 0 (unset) or at least ${CPU_QUOTA_MIN} µs`,
    );
  if (shares > CPU_SHARES_MAX) throw new InvalidArgumentError(f('cpu_shares'), `${shares} is above ${CPU_SHARES_MAX}`);
  if (period !== 0) cpu.period = period;
  if (quota !== 0) cpu.quota = quota;
  if (shares !== 0) cpu.shares = shares;
  if (r.cpusetCpus !== '') cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems !== '') cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  const limit = int64Field(r.memoryLimitInBytes, f('memory_limit_in_bytes'));
  if (limit < 0) throw new InvalidArgumentError(f('memory_limit_in_bytes'), `${limit} is negative`);
  if (limit !== 0 && limit < MEMORY_LIMIT_MIN)
    throw new InvalidArgumentError(
      f('memory_limit_in_bytes'),
      `${limit} bytes is below the ${MEMORY_LIMIT_MIN}-byte minimum (runc and the kernel refuse less)`,
    );
  if (limit !== 0) {
    const swap = int64Field(r.memorySwapLimitInBytes, f('memory_swap_limit_in_bytes'));
    out.memory = { limit };
    if (host.swapControllerAvailable) out.memory.swap = swap !== 0 ? swap : limit;
    else notes.push('resources: no swap controller on this host; memory swap limit not set');
  }

  if (r.hugepageLimits.length > 0) {
    if (host.hugetlbControllerAvailable) {
      out.hugepageLimits = r.hugepageLimits.map((h, i) => ({
        pageSize: h.pageSize,
        limit: int64Field(h.limit, f(`hugepage_limits[${i}].limit`)),
      }));
    } else {
      // containerd tolerates a missing hugetlb controller by default, and so do we.
      notes.push('resources: no hugetlb controller on this host; hugepage limits not set');
    }
  }

  const unified = Object.entries(r.unified);
  if (unified.length > 0) {
    if (host.cgroupVersion === 2) out.unified = Object.fromEntries(unified);
    else notes.push(`resources: cgroup v1 host; unified settings ${unified.map(([k]) => k).join(', ')} not applied`);
  }
  return out;
}

/** How runc places cgroups: as paths in the cgroup tree, or as systemd units (containerd's SystemdCgroup). */
export type CgroupDriver = 'cgroupfs' | 'systemd';

/**
 * The cgroup path under the pod's cgroup parent, for the configured driver.
 *
 * - `systemd`: kubelet (cgroupDriver: systemd) sends a slice (`kubepods-burstable-pod<uid>.slice`,
 *   or a path ending in one), and runc's systemd driver wants `slice:prefix:name`. With no
 *   parent, `system.slice`.
 * - `cgroupfs`: `<parent>/<id>`; with no parent, containerd's default `/<namespace>/<id>`.
 *
 * A parent that does not fit the driver is refused, naming the field: kubelet and the
 * runtime disagree about the driver, and the pod's cgroups would land outside kubelet's
 * hierarchy (its QoS, eviction and stats would go wrong). A parent with a `..` component or
 * a control byte is refused too: the spec in the log should say where the cgroup is.
 */
export function cgroupsPath(
  cgroupParent: string,
  id: string,
  containerdNamespace: string,
  field = 'linux.cgroup_parent',
  driver: CgroupDriver = 'cgroupfs',
): string {
  if (cgroupParent === '')
    return driver === 'systemd'
      ? `system.slice:${SYSTEMD_CGROUP_PREFIX}:${id}`
      : posix.join('/', containerdNamespace, id);
  plainText(cgroupParent, field);
  if (cgroupParent.split('/').includes('..'))
    throw new InvalidArgumentError(field, `"${cgroupParent}" contains a ".." component`);
  const base = posix.basename(cgroupParent);
  const slice = base.endsWith('.slice');
  if (driver === 'systemd') {
    if (!slice)
      throw new InvalidArgumentError(
        field,
        `"${cgroupParent}" is not a systemd slice, but cgroupDriver is systemd: set kubelet's cgroupDriver to systemd too, or cri-ledger's to cgroupfs`,
      );
    return `${base}:${SYSTEMD_CGROUP_PREFIX}:${id}`;
  }
  if (slice)
    throw new InvalidArgumentError(
      field,
      `"${cgroupParent}" is a systemd slice, but cgroupDriver is cgroupfs: set cri-ledger's cgroupDriver to systemd (kubelet uses the systemd driver)`,
    );
  return posix.join(cgroupParent, id);
}
