import { InvalidArgumentError } from '../../domain/errors.js';
import { sandboxAnnotations } from './annotations.js';
import { DEFAULT_CAPABILITIES, capabilitySets } from './capabilities.js';
import { DENY_ALL_DEVICES } from './devices.js';
import { defaultMounts } from './mounts.js';
import { sandboxNamespaces } from './namespaces.js';
import { OCI_VERSION, type OciLinux, type OciMount, type OciSpec } from './oci-spec.js';
import { DEFAULT_PATH_ENV, mergeEnv } from './process.js';
import { DEFAULT_SANDBOX_CPU_SHARES, DEFAULT_SANDBOX_OOM_SCORE_ADJ, cgroupsPath, oomScoreAdj } from './resources.js';
import { seccompChoice, seccompFor } from './seccomp.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, selinuxLabels } from './security.js';
import type { SandboxSpecInput, SpecResult } from './spec-input.js';
import { ociUser, requestedUser, resolveUser, supplementalGroups } from './user.js';

const SC = 'config.linux.security_context';

/**
 * The pause container's spec (containerd's sandboxContainerSpec): the image's command,
 * new namespaces the pod's containers will join, a read-only rootfs (pause writes
 * nothing), no new privileges, the default masked paths, the pod's sysctls (they are
 * per-namespace, and these are the pod's namespaces), a tiny CPU weight and an
 * oom_score_adj that makes it the last thing in the pod the kernel kills.
 */
export function buildSandboxSpec(input: SandboxSpecInput): SpecResult {
  const { config, image, host, options } = input;
  const notes: string[] = [];
  const sc = config.linux?.securityContext ?? null;
  const nsOptions = sc?.namespaceOptions ?? null;
  const privileged = sc?.privileged ?? false;
  const hostNetwork = nsOptions?.network === 'NODE';

  const args = [...(image.config.entrypoint ?? []), ...(image.config.cmd ?? [])];
  if (args.length === 0)
    throw new InvalidArgumentError('sandbox_image', `the sandbox image ${image.name} has no Entrypoint or Cmd`);

  const fromRequest = requestedUser('', sc?.runAsUser ?? null, sc?.runAsGroup ?? null, SC);
  const source =
    fromRequest !== ''
      ? { userstr: fromRequest, field: `${SC}.run_as_user` }
      : { userstr: image.config.user ?? '', field: 'sandbox_image.config.User' };
  const user = resolveUser(source, image.passwd, image.group);
  // pause needs none of them; the default set keeps the spec containerd's, less any this
  // service does not hold itself, which runc could not grant and would fail the pod on.
  const caps = capabilitySets(DEFAULT_CAPABILITIES.filter((c) => host.heldCapabilities.includes(c)));
  const labels = selinuxLabels(sc?.selinuxOptions ?? null, privileged, host.selinux, notes);
  if (sc?.apparmor && sc.apparmor.profileType !== 'Unconfined') {
    notes.push('apparmor: not applied to the pause container (containerd applies none either)');
  }

  const shm = nsOptions?.ipc === 'NODE' ? '/dev/shm' : input.files.devShm;
  const mounts: OciMount[] = [
    ...defaultMounts(),
    { destination: '/dev/shm', type: 'bind', source: shm, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] },
    // For VM runtimes (kata) that set up the pod's DNS from the pause container's spec.
    { destination: '/etc/resolv.conf', type: 'bind', source: input.files.resolvConf, options: ['rbind', 'ro'] },
  ];

  const oomField = 'sandbox oom_score_adj';
  const oom = oomScoreAdj(
    DEFAULT_SANDBOX_OOM_SCORE_ADJ,
    options.restrictOomScoreAdj,
    host.currentOomScoreAdj,
    oomField,
  );
  if (oom !== DEFAULT_SANDBOX_OOM_SCORE_ADJ)
    notes.push(
      `resources: sandbox oom_score_adj ${DEFAULT_SANDBOX_OOM_SCORE_ADJ} clamped to ${oom} (restrictOomScoreAdj)`,
    );

  const linux: OciLinux = {
    namespaces: sandboxNamespaces(nsOptions, input.netnsPath),
    resources: { devices: [{ ...DENY_ALL_DEVICES }], cpu: { shares: DEFAULT_SANDBOX_CPU_SHARES } },
    cgroupsPath: cgroupsPath(
      config.linux?.cgroupParent ?? '',
      input.sandboxId,
      options.containerdNamespace,
      'config.linux.cgroup_parent',
      options.cgroupDriver,
    ),
    sysctl: { ...config.linux?.sysctls },
    maskedPaths: [...DEFAULT_MASKED_PATHS],
    readonlyPaths: [...DEFAULT_READONLY_PATHS],
  };
  const seccomp = seccompFor(seccompChoice(sc?.seccomp ?? null, sc?.seccompProfilePath ?? '', SC), {
    privileged,
    hostSeccomp: host.seccomp,
    boundingCaps: caps.bounding,
    arch: host.arch,
    loadLocalhostProfile: input.loadLocalhostProfile,
    field: `${SC}.seccomp`,
  });
  if (seccomp !== undefined) linux.seccomp = seccomp;
  if (labels.mountLabel !== undefined) linux.mountLabel = labels.mountLabel;

  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: ociUser(user, [], supplementalGroups(sc?.supplementalGroups ?? [], `${SC}.supplemental_groups`)),
      args,
      env: mergeEnv([DEFAULT_PATH_ENV], image.config.env ?? []),
      cwd: image.config.workingDir || '/',
      capabilities: caps,
      noNewPrivileges: true,
      oomScoreAdj: oom,
      ...(labels.processLabel !== undefined ? { selinuxLabel: labels.processLabel } : {}),
    },
    root: { path: 'rootfs', readonly: true },
    mounts,
    annotations: sandboxAnnotations(input.sandboxId, config),
    linux,
  };
  // runc sets the hostname only in a UTS namespace of the container's own; a host-network pod has the node's.
  if (!hostNetwork && config.hostname !== '') spec.hostname = config.hostname;
  return { spec, notes, relabel: [] };
}
