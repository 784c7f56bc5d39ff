import { InvalidArgumentError } from '../../domain/errors.js';
import type { Capability__Output } from '../cri/generated/runtime/v1/Capability.js';
import type { OciCapabilities } from './oci-spec.js';

/** Every capability Linux defines (through 5.9), in number order. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/**
 * The capabilities a process holds, from its `/proc/<pid>/status`: those in both its
 * bounding set (CapBnd) and its effective set (CapEff), by name, in number order. This is
 * what a privileged container, or one that adds `ALL`, gets (containerd's
 * `WithAllCurrentCapabilities`): runc can only hand a container what the runtime itself
 * holds, and asking for more fails every start with "unable to apply caps". Bits this
 * list has no name for (a newer kernel's) are left out. Undefined when the status has
 * neither line.
 */
export function heldCapabilities(status: string): string[] | undefined {
  const set = (name: string): bigint | undefined => {
    const hex = new RegExp(`^${name}:\\s*([0-9a-f]+)\\s*$`, 'im').exec(status)?.[1];
    return hex === undefined ? undefined : BigInt(`0x${hex}`);
  };
  const bounding = set('CapBnd');
  const effective = set('CapEff');
  if (bounding === undefined || effective === undefined) return undefined;
  const held = bounding & effective;
  return ALL_CAPABILITIES.filter((_, bit) => (held >> BigInt(bit)) & 1n);
}

/** The capabilities a container gets by default (containerd's, which are docker's). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/**
 * Caps in the spec carry the `CAP_` prefix, the CRI's do not (kubelet sends `NET_ADMIN`).
 * A prefixed name is accepted too, rather than turned into CAP_CAP_X for runc to refuse.
 */
function normalise(name: string, field: string): string {
  const upper = name.trim().toUpperCase();
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(full)) throw new InvalidArgumentError(field, `unknown capability "${name}"`);
  return full;
}

const isAll = (name: string): boolean => name.trim().toUpperCase() === 'ALL';

/**
 * The process capabilities for a non-privileged container: the default set, then `ALL`
 * (add: every capability the runtime holds, `heldCaps`; drop: none), then the individual adds and drops,
 * so `add: [ALL], drop: [CHOWN]` is everything but CHOWN. Ambient and inheritable stay
 * empty: what non-root plus ambient caps should mean is not defined by Kubernetes, and
 * inheritable caps leaked into exec'd setuid programs (CVE-2022-24769).
 */
export function containerCapabilities(
  requested: Capability__Output | null,
  heldCaps: readonly string[],
): OciCapabilities {
  let caps = [...DEFAULT_CAPABILITIES];
  if (requested !== null) {
    const field = 'config.linux.security_context.capabilities';
    if (requested.addCapabilities.some(isAll)) caps = [...heldCaps];
    if (requested.dropCapabilities.some(isAll)) caps = [];
    for (const name of requested.addCapabilities) {
      if (isAll(name)) continue;
      const cap = normalise(name, `${field}.add_capabilities`);
      if (!caps.includes(cap)) caps.push(cap);
    }
    const drop = new Set(
      requested.dropCapabilities.filter((n) => !isAll(n)).map((n) => normalise(n, `${field}.drop_capabilities`)),
    );
    caps = caps.filter((c) => !drop.has(c));
  }
  return capabilitySets(caps);
}

/** The same list as bounding, effective and permitted. */
export function capabilitySets(caps: readonly string[]): OciCapabilities {
  return { bounding: [...caps], effective: [...caps], permitted: [...caps] };
}
