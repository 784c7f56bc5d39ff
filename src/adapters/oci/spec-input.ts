import type { CgroupDriver } from './resources.js';
import type { ContainerConfig__Output } from '../cri/generated/runtime/v1/ContainerConfig.js';
import type { PodSandboxConfig__Output } from '../cri/generated/runtime/v1/PodSandboxConfig.js';
import type { OciSpec } from './oci-spec.js';

/*
 * What spec generation needs from outside, passed in so that generation stays pure: the
 * caller (the CreateContainer / RunPodSandbox saga steps) reads the host and the image,
 * this folder only decides.
 */

/** The fields of an OCI image config (`config` of the image's config blob) that shape a spec. */
export interface ImageConfigInput {
  entrypoint?: readonly string[] | null;
  cmd?: readonly string[] | null;
  env?: readonly string[] | null;
  workingDir?: string;
  /** `name`, `uid`, `name:group`, `uid:gid`, `uid:group` or `name:gid`. */
  user?: string;
}

/** The image as spec generation sees it. */
export interface ImageInput {
  /** The image name recorded in the `io.kubernetes.cri.image-name` annotation. */
  name: string;
  config: ImageConfigInput;
  /** The image's /etc/passwd, read from a read-only view of the image; undefined if it has none. */
  passwd?: string;
  /** The image's /etc/group, likewise. */
  group?: string;
}

/** A device node on the host, as stat(2) describes it. */
export interface HostDevice {
  /** Its path on the host (after following symlinks). */
  path: string;
  type: 'c' | 'b' | 'u' | 'p';
  major: number;
  minor: number;
  /** Permission bits of the node (st_mode without the file type). */
  fileMode: number;
  uid: number;
  gid: number;
}

/** Propagation of the host mount that holds a path (from /proc/self/mountinfo optional fields). */
export interface HostPropagation {
  shared: boolean;
  slave: boolean;
}

/** Facts about the host, read once at startup or per call by the caller. */
export interface HostFacts {
  /** `process.arch` (x64, arm64, ...): selects the seccomp architectures and arch-only syscalls. */
  arch: string;
  cgroupVersion: 1 | 2;
  apparmor: boolean;
  selinux: boolean;
  /** The kernel supports seccomp filters; false makes any profile but unconfined an error. */
  seccomp: boolean;
  /** memory.memsw (v1) / memory.swap.max (v2) exists, so a swap limit can be set. */
  swapControllerAvailable: boolean;
  hugetlbControllerAvailable: boolean;
  /**
   * The capabilities this service's process holds (bounding and effective): what a
   * privileged container, or `add: [ALL]`, gets, as containerd's WithAllCurrentCapabilities.
   */
  heldCapabilities: readonly string[];
  /** Every device under the host's /dev, for privileged containers. */
  devices: readonly HostDevice[];
  /** This process's /proc/self/oom_score_adj, the floor when the OOM score is restricted. */
  currentOomScoreAdj: number;
  /** The host's name, used for HOSTNAME when the sandbox gives none. */
  hostname: string;
}

/** Service configuration that changes the generated spec. */
export interface SpecOptions {
  /** Clamp oom_score_adj to the current value instead of letting runc fail (containerd's restrict_oom_score_adj). */
  restrictOomScoreAdj: boolean;
  /** The containerd namespace: the cgroup path when the sandbox names no cgroup parent is /<namespace>/<id>. */
  containerdNamespace: string;
  /** How runc places cgroups (default cgroupfs); the pod's cgroup parent must fit it. */
  cgroupDriver?: CgroupDriver;
  /**
   * Apply kubelet's default masked and read-only paths when the request lists none. Off by
   * default: kubelet sends its defaults for procMount Default and empty lists for Unmasked,
   * so an empty list is a request for no masking, as containerd treats it.
   */
  defaultPathsWhenUnset?: boolean;
}

/** The files RunPodSandbox wrote for the pod, bind-mounted into each container. */
export interface SandboxFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
  /** The pod's /dev/shm (a tmpfs); ignored when the pod uses the host's IPC namespace. */
  devShm: string;
}

/** A directory under the container root that backs an image-defined volume. */
export interface ImageVolumeDir {
  containerPath: string;
  hostPath: string;
}

export interface ContainerSpecInput {
  containerId: string;
  sandboxId: string;
  config: ContainerConfig__Output;
  sandboxConfig: PodSandboxConfig__Output;
  image: ImageInput;
  sandbox: {
    /** The pause task's pid: its /proc/<pid>/ns/* are the namespaces a container joins. */
    pid: number;
    /** The pod's network namespace file; '' for a host-network pod. */
    netnsPath: string;
    files: SandboxFiles;
  };
  /** The target container's task pid when the pid namespace mode is TARGET. */
  targetPid?: number;
  /** From imageVolumeDirs(). */
  imageVolumes: readonly ImageVolumeDir[];
  /** A CRI mount's host path with symlinks resolved; identity when not given. */
  resolveHostPath?: (hostPath: string, field: string) => string;
  /** Propagation of the host mount holding a (resolved) host path. */
  hostPropagation: (hostPath: string) => HostPropagation;
  /** The device nodes at a CRI device's host path (several for a directory); [] if none. */
  deviceInfo: (hostPath: string) => readonly HostDevice[];
  /** The JSON (text or parsed) of a localhost seccomp profile at an absolute host path. */
  loadLocalhostProfile: (path: string) => unknown;
  host: HostFacts;
  options: SpecOptions;
}

export interface SandboxSpecInput {
  sandboxId: string;
  config: PodSandboxConfig__Output;
  image: ImageInput;
  /** The network namespace created for the pod; '' for a host-network pod. */
  netnsPath: string;
  files: SandboxFiles;
  loadLocalhostProfile: (path: string) => unknown;
  host: HostFacts;
  options: SpecOptions;
}

/** A host path to label for SELinux before the container starts (an I/O step for the caller). */
export interface Relabel {
  path: string;
  label: string;
}

export interface SpecResult {
  spec: OciSpec;
  /** What was skipped on this host (no AppArmor, no SELinux, cgroup v1, ...), for logging. */
  notes: string[];
  relabel: Relabel[];
}
