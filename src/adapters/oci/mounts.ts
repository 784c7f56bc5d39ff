import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';
import { absolutePath } from '../../domain/text.js';
import type { Mount__Output } from '../cri/generated/runtime/v1/Mount.js';
import type { OciMount } from './oci-spec.js';
import type { HostPropagation, ImageVolumeDir, SandboxFiles } from './spec-input.js';

/** Size of the tmpfs on /dev (containerd's default): device nodes only, 64 MiB is plenty. */
export const DEFAULT_DEV_TMPFS_SIZE_KIB = 65536;

/**
 * The mounts every container gets (containerd's default spec without /run, plus the
 * read-only cgroup mount docker always gave). /dev/shm is not here: it is the pod's,
 * bind-mounted with the sandbox files.
 */
export function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', `size=${DEFAULT_DEV_TMPFS_SIZE_KIB}k`],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
  ];
}

/** A privileged container may write /sys and its cgroups, as with docker --privileged. */
export function writableSystemMounts(mounts: readonly OciMount[]): OciMount[] {
  return mounts.map((m) =>
    m.type === 'sysfs' || m.type === 'cgroup' ? { ...m, options: m.options.map((o) => (o === 'ro' ? 'rw' : o)) } : m,
  );
}

/** A mount the container asked for, or one the runtime adds, before it becomes an OCI bind mount. */
export interface BindRequest {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  selinuxRelabel: boolean;
  propagation: Mount__Output['propagation'];
  /** For errors: the request field this mount came from. */
  field: string;
}

const clean = (p: string): string => posix.normalize(p).replace(/(.)\/$/, '$1');

/**
 * The pod's files at /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm, unless the
 * request mounts something there itself. They are read-only with a read-only rootfs, so
 * such a container cannot write anywhere. With host IPC, /dev/shm is the host's.
 */
export function sandboxFileMounts(files: SandboxFiles, readonlyRootfs: boolean, hostIpc: boolean): BindRequest[] {
  const file = (containerPath: string, hostPath: string): BindRequest => ({
    containerPath,
    hostPath,
    readonly: readonlyRootfs,
    selinuxRelabel: true,
    propagation: 'PROPAGATION_PRIVATE',
    field: 'sandbox',
  });
  const shm = hostIpc ? '/dev/shm' : files.devShm;
  return [
    file('/etc/hostname', files.hostname),
    file('/etc/hosts', files.hosts),
    file('/etc/resolv.conf', files.resolvConf),
    { ...file('/dev/shm', shm), readonly: false, selinuxRelabel: !hostIpc },
  ];
}

/**
 * The request's mounts, with host paths resolved by the caller. Both paths must be
 * absolute, without `..` or control bytes: runc resolves the container path inside the
 * rootfs, but the spec recorded in the log should say plainly where each mount goes.
 */
export function criMounts(
  mounts: readonly Mount__Output[],
  resolve: (p: string, field: string) => string,
): BindRequest[] {
  return mounts.map((m, i) => {
    const field = `config.mounts[${i}]`;
    absolutePath(m.containerPath, `${field}.container_path`);
    if (m.hostPath === '') throw new InvalidArgumentError(`${field}.host_path`, 'is empty');
    absolutePath(m.hostPath, `${field}.host_path`);
    return {
      containerPath: m.containerPath,
      hostPath: resolve(m.hostPath, `${field}.host_path`),
      readonly: m.readonly,
      selinuxRelabel: m.selinuxRelabel,
      propagation: m.propagation,
      field,
    };
  });
}

export interface MountPlan {
  mounts: OciMount[];
  rootfsPropagation?: 'rshared' | 'rslave';
  /** Host paths the caller relabels (when SELinux is on). */
  relabel: string[];
}

/**
 * The spec's mounts: the defaults, minus any the request replaces (and everything under
 * /dev when it replaces /dev), then the bind mounts, shallowest first so a parent never
 * hides a child. A request mount wins over a runtime one at the same destination, and
 * over an image volume.
 */
export function planMounts(
  defaults: readonly OciMount[],
  requested: readonly BindRequest[],
  runtime: readonly BindRequest[],
  volumes: readonly ImageVolumeDir[],
  hostPropagation: (hostPath: string) => HostPropagation,
  notes: string[],
): MountPlan {
  const requestedAt = new Set(requested.map((m) => clean(m.containerPath)));
  const binds: BindRequest[] = [...requested];
  for (const m of runtime) if (!requestedAt.has(clean(m.containerPath))) binds.push(m);
  for (const v of volumes) {
    if (requestedAt.has(clean(v.containerPath))) continue;
    binds.push({
      ...v,
      readonly: false,
      selinuxRelabel: true,
      propagation: 'PROPAGATION_PRIVATE',
      field: 'image volume',
    });
  }
  const depth = (p: string): number => clean(p).split('/').filter(Boolean).length;
  // Array.prototype.sort is stable: equal depths keep their order.
  binds.sort((a, b) => depth(a.containerPath) - depth(b.containerPath));

  const boundAt = new Set(binds.map((m) => clean(m.containerPath)));
  const mounts = defaults.filter((m) => {
    const dst = clean(m.destination);
    return !boundAt.has(dst) && !(boundAt.has('/dev') && dst.startsWith('/dev/'));
  });

  let rootfsPropagation: MountPlan['rootfsPropagation'];
  const relabel: string[] = [];
  for (const m of binds) {
    const options = ['rbind'];
    switch (m.propagation) {
      case 'PROPAGATION_PRIVATE':
        options.push('rprivate');
        break;
      case 'PROPAGATION_BIDIRECTIONAL':
        // Mounts made in the container reach the host only if the host side is shared.
        if (!hostPropagation(m.hostPath).shared) {
          throw new InvalidArgumentError(
            `${m.field}.container_path`,
            `${m.containerPath}: bidirectional propagation needs the host mount of ${m.hostPath} to be shared`,
          );
        }
        options.push('rshared');
        rootfsPropagation = 'rshared';
        break;
      case 'PROPAGATION_HOST_TO_CONTAINER': {
        const p = hostPropagation(m.hostPath);
        if (!p.shared && !p.slave) {
          throw new InvalidArgumentError(
            `${m.field}.container_path`,
            `${m.containerPath}: host-to-container propagation needs the host mount of ${m.hostPath} to be shared or slave`,
          );
        }
        options.push('rslave');
        if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
        break;
      }
      default:
        notes.push(`mounts: unknown propagation ${String(m.propagation)} for ${m.containerPath}; using rprivate`);
        options.push('rprivate');
    }
    // Other mounts stay writable under a read-only rootfs: each says for itself (containerd, unlike docker).
    options.push(m.readonly ? 'ro' : 'rw');
    if (m.selinuxRelabel) relabel.push(m.hostPath);
    mounts.push({ destination: m.containerPath, type: 'bind', source: m.hostPath, options });
  }
  return rootfsPropagation === undefined ? { mounts, relabel } : { mounts, rootfsPropagation, relabel };
}
