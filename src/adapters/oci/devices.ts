import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';
import type { Device__Output } from '../cri/generated/runtime/v1/Device.js';
import type { OciDevice, OciDeviceCgroup } from './oci-spec.js';
import type { HostDevice } from './spec-input.js';

/** Deny every device first; runc then allows its defaults (null, zero, tty, ...) and we allow the requested ones. */
export const DENY_ALL_DEVICES: OciDeviceCgroup = { allow: false, access: 'rwm' };

export interface DevicePlan {
  devices: OciDevice[];
  cgroup: OciDeviceCgroup[];
}

function ociDevice(d: HostDevice, path: string): OciDevice {
  return { type: d.type, path, major: d.major, minor: d.minor, fileMode: d.fileMode, uid: d.uid, gid: d.gid };
}

/**
 * The request's devices: each host path (a node, or a directory of nodes) is created in
 * the container with the host node's numbers and owner, and allowed in the device cgroup
 * with the requested permissions (a subset of r, w, m; empty means rwm as containerd).
 */
export function criDevices(
  requested: readonly Device__Output[],
  deviceInfo: (hostPath: string) => readonly HostDevice[],
): DevicePlan {
  const plan: DevicePlan = { devices: [], cgroup: [{ ...DENY_ALL_DEVICES }] };
  requested.forEach((d, i) => {
    const field = `config.devices[${i}]`;
    const access = d.permissions === '' ? 'rwm' : d.permissions;
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      throw new InvalidArgumentError(`${field}.permissions`, `"${d.permissions}" is not a combination of r, w and m`);
    }
    const nodes = deviceInfo(d.hostPath);
    if (nodes.length === 0)
      throw new InvalidArgumentError(`${field}.host_path`, `${d.hostPath} is not a device or a directory of devices`);
    const containerPath = d.containerPath !== '' ? d.containerPath : d.hostPath;
    const single = nodes.length === 1 && nodes[0]?.path === d.hostPath;
    for (const node of nodes) {
      // A directory keeps its layout: /dev/snd/controlC0 under host /dev/snd lands under the container path.
      const path = single ? containerPath : posix.join(containerPath, posix.relative(d.hostPath, node.path));
      plan.devices.push(ociDevice(node, path));
      plan.cgroup.push({ allow: true, type: node.type, major: node.major, minor: node.minor, access });
    }
  });
  return plan;
}

/** A privileged container sees every host device and may use any (docker --privileged). */
export function privilegedDevices(host: readonly HostDevice[]): DevicePlan {
  return { devices: host.map((d) => ociDevice(d, d.path)), cgroup: [{ allow: true, access: 'rwm' }] };
}
