import { InvalidArgumentError } from '../../domain/errors.js';
import type { SecurityProfile__Output } from '../cri/generated/runtime/v1/SecurityProfile.js';
import type { SELinuxOption__Output } from '../cri/generated/runtime/v1/SELinuxOption.js';

/** kubelet's masked paths for procMount Default (what it sends; used when asked to fill in unset lists). */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** kubelet's read-only paths for procMount Default. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/** The AppArmor profile for RuntimeDefault; the host must have it loaded (see docs/oci-spec.md). */
export const DEFAULT_APPARMOR_PROFILE = 'cri-ledger.apparmor.d';

/** Labels a container gets on an SELinux host when the request names none of the parts. */
export const DEFAULT_SELINUX_PROCESS_LABEL = 'system_u:system_r:container_t:s0';
export const DEFAULT_SELINUX_MOUNT_LABEL = 'system_u:object_r:container_file_t:s0';

export interface PathLists {
  maskedPaths: string[];
  readonlyPaths: string[];
}

/**
 * Masked and read-only paths. A privileged container has none (it may see the host's
 * /proc and /sys in full). Otherwise the request's lists are used as given: kubelet sends
 * its defaults for procMount Default and empty lists for Unmasked, and proto3 cannot tell
 * an empty list from an unset one, so an empty list means "no masking" unless the
 * operator asked for defaults on unset lists (for clients that are not kubelet).
 */
export function pathLists(
  masked: readonly string[],
  readonly: readonly string[],
  privileged: boolean,
  defaultWhenUnset: boolean,
): PathLists {
  if (privileged) return { maskedPaths: [], readonlyPaths: [] };
  const pick = (given: readonly string[], fallback: readonly string[]): string[] =>
    given.length > 0 || !defaultWhenUnset ? [...given] : [...fallback];
  return { maskedPaths: pick(masked, DEFAULT_MASKED_PATHS), readonlyPaths: pick(readonly, DEFAULT_READONLY_PATHS) };
}

export type AppArmorChoice = { kind: 'unconfined' } | { kind: 'default' } | { kind: 'localhost'; name: string };

/**
 * What AppArmor the request asks for: the `apparmor` message wins over the deprecated
 * `apparmor_profile` string; unset means the runtime default, as containerd does after
 * kubernetes#51746.
 */
export function appArmorChoice(
  profile: SecurityProfile__Output | null,
  legacy: string,
  fieldPrefix: string,
): AppArmorChoice {
  if (profile !== null) {
    switch (profile.profileType) {
      case 'Unconfined':
        return { kind: 'unconfined' };
      case 'RuntimeDefault':
        return { kind: 'default' };
      case 'Localhost': {
        const name = profile.localhostRef.replace(/^localhost\//, '');
        if (name === '') throw new InvalidArgumentError(`${fieldPrefix}.apparmor.localhost_ref`, 'is empty');
        return { kind: 'localhost', name };
      }
      default:
        throw new InvalidArgumentError(
          `${fieldPrefix}.apparmor.profile_type`,
          `unknown profile type ${String(profile.profileType)}`,
        );
    }
  }
  if (legacy === '' || legacy === 'runtime/default') return { kind: 'default' };
  if (legacy === 'unconfined') return { kind: 'unconfined' };
  if (legacy.startsWith('localhost/') && legacy.length > 'localhost/'.length) {
    return { kind: 'localhost', name: legacy.slice('localhost/'.length) };
  }
  throw new InvalidArgumentError(`${fieldPrefix}.apparmor_profile`, `unsupported profile "${legacy}"`);
}

/**
 * The process's AppArmor profile, or undefined. Without AppArmor on the host this is a
 * no-op with a note (a profile could not be enforced, and runc would fail on it).
 */
export function appArmorProfile(
  choice: AppArmorChoice,
  privileged: boolean,
  hostAppArmor: boolean,
  notes: string[],
): string | undefined {
  if (choice.kind === 'unconfined') return undefined;
  if (!hostAppArmor) {
    const what = choice.kind === 'default' ? 'runtime/default' : `localhost/${choice.name}`;
    notes.push(`apparmor: the host has no AppArmor; profile ${what} not applied`);
    return undefined;
  }
  // The default profile would only get in the way of a privileged container; an explicit one is honoured.
  if (choice.kind === 'default') return privileged ? undefined : DEFAULT_APPARMOR_PROFILE;
  return choice.name;
}

export interface SelinuxLabels {
  processLabel?: string;
  mountLabel?: string;
}

function setLabelParts(base: string, parts: Partial<Record<'user' | 'role' | 'type' | 'level', string>>): string {
  const [user = '', role = '', type = '', ...level] = base.split(':');
  return [parts.user || user, parts.role || role, parts.type || type, parts.level || level.join(':')].join(':');
}

/**
 * Process and mount labels from the request's SELinux options (falling back to the
 * pod's): user and level apply to both labels, role and type to the process only, as
 * go-selinux's InitLabels does. No-op with a note on a host without SELinux.
 */
export function selinuxLabels(
  options: SELinuxOption__Output | null,
  privileged: boolean,
  hostSelinux: boolean,
  notes: string[],
): SelinuxLabels {
  const requested = options !== null && (options.user || options.role || options.type || options.level);
  if (!hostSelinux) {
    if (requested) notes.push('selinux: the host has no SELinux; the requested labels are not applied');
    return {};
  }
  // A privileged container runs unconfined, as docker and containerd's WithPrivileged leave it.
  if (privileged) return {};
  const o = options ?? { user: '', role: '', type: '', level: '' };
  return {
    processLabel: setLabelParts(DEFAULT_SELINUX_PROCESS_LABEL, o),
    mountLabel: setLabelParts(DEFAULT_SELINUX_MOUNT_LABEL, { user: o.user, level: o.level }),
  };
}
