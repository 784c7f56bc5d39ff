import { InvalidArgumentError } from '../../domain/errors.js';
import type { NamespaceOption__Output } from '../cri/generated/runtime/v1/NamespaceOption.js';
import type { OciNamespace } from './oci-spec.js';

/** A namespace of a running process, joined through procfs (stable while the pause task lives). */
export function procNamespace(pid: number, ns: 'net' | 'ipc' | 'uts' | 'pid'): string {
  return `/proc/${pid}/ns/${ns}`;
}

function rejectUserNamespace(options: NamespaceOption__Output | null, field: string): void {
  const mode = options?.usernsOptions?.mode;
  // As containerd 1.6: no user namespaces. Refuse rather than silently run in the host's.
  if (mode !== undefined && mode !== 'NODE') {
    throw new InvalidArgumentError(`${field}.userns_options`, 'user namespaces are not supported by cri-ledger yet');
  }
}

export interface ContainerNamespaceInput {
  /** The container's namespace options (kubelet copies the pod's). */
  options: NamespaceOption__Output | null;
  sandboxPid: number;
  /** The pod's netns file; '' with a host-network pod. */
  netnsPath: string;
  targetPid?: number;
  cgroupVersion: 1 | 2;
  privileged: boolean;
}

/**
 * A container's namespaces: its own mount namespace; the pod's network, IPC and UTS
 * (omitted, i.e. the host's, when the pod uses the host's); the pid namespace by mode:
 * POD the pause task's, CONTAINER a new one, NODE the host's, TARGET another container's.
 * A cgroup namespace only on cgroup v2 and unprivileged, as containerd: on v1 it would
 * hide nothing useful and break tools that read /proc/self/cgroup paths.
 */
export function containerNamespaces(input: ContainerNamespaceInput): OciNamespace[] {
  const field = 'config.linux.security_context.namespace_options';
  const o = input.options;
  rejectUserNamespace(o, field);
  const hostNetwork = o?.network === 'NODE';
  const namespaces: OciNamespace[] = [{ type: 'mount' }];
  if (!hostNetwork) {
    namespaces.push({
      type: 'network',
      path: input.netnsPath !== '' ? input.netnsPath : procNamespace(input.sandboxPid, 'net'),
    });
    namespaces.push({ type: 'uts', path: procNamespace(input.sandboxPid, 'uts') });
  }
  if (o?.ipc !== 'NODE') namespaces.push({ type: 'ipc', path: procNamespace(input.sandboxPid, 'ipc') });
  const pidMode = o?.pid ?? 'POD';
  switch (pidMode) {
    case 'POD':
      namespaces.push({ type: 'pid', path: procNamespace(input.sandboxPid, 'pid') });
      break;
    case 'CONTAINER':
      namespaces.push({ type: 'pid' });
      break;
    case 'NODE':
      break;
    case 'TARGET':
      if (input.targetPid === undefined || input.targetPid <= 0) {
        throw new InvalidArgumentError(
          `${field}.target_id`,
          `target container "${o?.targetId ?? ''}" has no running task`,
        );
      }
      namespaces.push({ type: 'pid', path: procNamespace(input.targetPid, 'pid') });
      break;
    default:
      throw new InvalidArgumentError(`${field}.pid`, `unknown namespace mode ${String(pidMode)}`);
  }
  if (input.cgroupVersion === 2 && !input.privileged) namespaces.push({ type: 'cgroup' });
  return namespaces;
}

/**
 * The pause container's namespaces: new pid, ipc, uts and mount namespaces unless the pod
 * uses the host's; the network namespace is the one made for the pod (so CNI could set it
 * up before the task starts), or the host's. A host-network pod also keeps the host's UTS
 * namespace, so its hostname is the node's.
 */
export function sandboxNamespaces(options: NamespaceOption__Output | null, netnsPath: string): OciNamespace[] {
  const field = 'config.linux.security_context.namespace_options';
  rejectUserNamespace(options, field);
  const namespaces: OciNamespace[] = [{ type: 'mount' }];
  if (options?.network !== 'NODE') {
    if (netnsPath === '')
      throw new InvalidArgumentError(`${field}.network`, 'a pod-network sandbox needs its network namespace');
    namespaces.push({ type: 'network', path: netnsPath }, { type: 'uts' });
  }
  if (options?.pid !== 'NODE') namespaces.push({ type: 'pid' });
  if (options?.ipc !== 'NODE') namespaces.push({ type: 'ipc' });
  return namespaces;
}
