import { InvalidArgumentError } from '../../domain/errors.js';
import { containerAnnotations } from './annotations.js';
import { capabilitySets, containerCapabilities } from './capabilities.js';
import { criDevices, privilegedDevices } from './devices.js';
import { criMounts, defaultMounts, planMounts, sandboxFileMounts, writableSystemMounts } from './mounts.js';
import { containerNamespaces } from './namespaces.js';
import { OCI_VERSION, type OciLinux, type OciProcess, type OciSpec } from './oci-spec.js';
import { containerEnv, processArgs, processCwd } from './process.js';
import { cgroupsPath, containerResources, oomScoreAdj } from './resources.js';
import { seccompChoice, seccompFor } from './seccomp.js';
import { appArmorChoice, appArmorProfile, pathLists, selinuxLabels } from './security.js';
import type { ContainerSpecInput, SpecResult } from './spec-input.js';
import { memberGroups, ociUser, requestedUser, resolveUser, supplementalGroups } from './user.js';
import { int64Field } from './values.js';

const SC = 'config.linux.security_context';

/**
 * The OCI runtime spec for a CreateContainer request, as containerd's CRI plugin (1.6/1.7)
 * would generate it for runc. Pure: everything read from the host or the image arrives in
 * `input`; the result says what was skipped on this host and which paths to relabel.
 */
export function buildContainerSpec(input: ContainerSpecInput): SpecResult {
  const { config, sandboxConfig, image, host, options } = input;
  const notes: string[] = [];
  const sc = config.linux?.securityContext ?? null;
  const sandboxSc = sandboxConfig.linux?.securityContext ?? null;
  const privileged = sc?.privileged ?? false;
  if (privileged && !(sandboxSc?.privileged ?? false)) {
    throw new InvalidArgumentError(`${SC}.privileged`, 'a privileged container needs a privileged sandbox');
  }
  const nsOptions = sc?.namespaceOptions ?? sandboxSc?.namespaceOptions ?? null;
  const readonlyRootfs = sc?.readonlyRootfs ?? false;

  // User: the request's, else the image's USER; groups from the image's /etc/group plus the configured ones.
  const fromRequest = requestedUser(sc?.runAsUsername ?? '', sc?.runAsUser ?? null, sc?.runAsGroup ?? null, SC);
  const source =
    fromRequest !== ''
      ? { userstr: fromRequest, field: sc?.runAsUsername ? `${SC}.run_as_username` : `${SC}.run_as_user` }
      : { userstr: image.config.user ?? '', field: 'image.config.User' };
  const user = resolveUser(source, image.passwd, image.group);
  const processUser = ociUser(
    user,
    memberGroups(user.name, image.group),
    supplementalGroups(sc?.supplementalGroups ?? [], `${SC}.supplemental_groups`),
  );

  // Privileged: every capability this service holds, not every one the kernel knows (runc cannot grant more).
  const capabilities = privileged
    ? capabilitySets(host.heldCapabilities)
    : containerCapabilities(sc?.capabilities ?? null, host.heldCapabilities);
  const hostname = sandboxConfig.hostname !== '' ? sandboxConfig.hostname : host.hostname;

  const process: OciProcess = {
    terminal: config.tty,
    user: processUser,
    args: processArgs(config, image.config),
    env: containerEnv(config, image.config, hostname),
    cwd: processCwd(config, image.config),
    capabilities,
    noNewPrivileges: sc?.noNewPrivs ?? false,
  };
  const resources = config.linux?.resources ?? null;
  if (resources !== null) {
    const field = 'config.linux.resources.oom_score_adj';
    const requested = int64Field(resources.oomScoreAdj, field);
    process.oomScoreAdj = oomScoreAdj(requested, options.restrictOomScoreAdj, host.currentOomScoreAdj, field);
    if (process.oomScoreAdj !== requested) {
      notes.push(`resources: oom_score_adj ${requested} clamped to ${process.oomScoreAdj} (restrictOomScoreAdj)`);
    }
  }
  const apparmor = appArmorProfile(
    appArmorChoice(sc?.apparmor ?? null, sc?.apparmorProfile ?? '', SC),
    privileged,
    host.apparmor,
    notes,
  );
  if (apparmor !== undefined) process.apparmorProfile = apparmor;
  const labels = selinuxLabels(
    sc?.selinuxOptions ?? sandboxSc?.selinuxOptions ?? null,
    privileged,
    host.selinux,
    notes,
  );
  if (labels.processLabel !== undefined) process.selinuxLabel = labels.processLabel;

  // Mounts: defaults, the pod's files, the request's mounts, image volumes.
  const hostIpc = nsOptions?.ipc === 'NODE';
  const defaults = privileged ? writableSystemMounts(defaultMounts()) : defaultMounts();
  const plan = planMounts(
    defaults,
    criMounts(config.mounts, input.resolveHostPath ?? ((p) => p)),
    sandboxFileMounts(input.sandbox.files, readonlyRootfs, hostIpc),
    input.imageVolumes,
    input.hostPropagation,
    notes,
  );
  const relabel =
    labels.mountLabel !== undefined ? plan.relabel.map((path) => ({ path, label: labels.mountLabel as string })) : [];
  if (!host.selinux && config.mounts.some((m) => m.selinuxRelabel)) {
    notes.push('selinux: the host has no SELinux; mounts asking for a relabel are mounted as they are');
  }

  const devices = privileged ? privilegedDevices(host.devices) : criDevices(config.devices, input.deviceInfo);
  const paths = pathLists(
    sc?.maskedPaths ?? [],
    sc?.readonlyPaths ?? [],
    privileged,
    options.defaultPathsWhenUnset ?? false,
  );

  const linux: OciLinux = {
    namespaces: containerNamespaces({
      options: nsOptions,
      sandboxPid: input.sandbox.pid,
      netnsPath: input.sandbox.netnsPath,
      ...(input.targetPid !== undefined ? { targetPid: input.targetPid } : {}),
      cgroupVersion: host.cgroupVersion,
      privileged,
    }),
    resources: containerResources(resources, host, { devices: devices.cgroup }, notes),
    cgroupsPath: cgroupsPath(
      sandboxConfig.linux?.cgroupParent ?? '',
      input.containerId,
      options.containerdNamespace,
      'sandbox_config.linux.cgroup_parent',
      options.cgroupDriver,
    ),
    devices: devices.devices,
    maskedPaths: paths.maskedPaths,
    readonlyPaths: paths.readonlyPaths,
  };
  const seccomp = seccompFor(seccompChoice(sc?.seccomp ?? null, sc?.seccompProfilePath ?? '', SC), {
    privileged,
    hostSeccomp: host.seccomp,
    boundingCaps: capabilities.bounding,
    arch: host.arch,
    loadLocalhostProfile: input.loadLocalhostProfile,
    field: `${SC}.seccomp`,
  });
  if (seccomp !== undefined) linux.seccomp = seccomp;
  if (plan.rootfsPropagation !== undefined) linux.rootfsPropagation = plan.rootfsPropagation;
  if (labels.mountLabel !== undefined) linux.mountLabel = labels.mountLabel;

  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process,
    root: { path: 'rootfs', readonly: readonlyRootfs },
    mounts: plan.mounts,
    annotations: containerAnnotations({
      requested: config.annotations,
      sandboxId: input.sandboxId,
      sandboxConfig,
      containerName: config.metadata?.name ?? '',
      imageName: image.name,
    }),
    linux,
  };
  return { spec, notes, relabel };
}
