import type {
  PodFiles,
  PodNetworkRequest,
  SandboxNetwork,
  SandboxSpecFactory,
  TaskRuntime,
  ContainerDirs,
  ContainerFiles,
  ContainerIo,
  ContainerLogs,
  ContainerRuntime,
  ContainerSpecInput,
  CreatedHostPath,
  ImageStore,
  MountSource,
  PreparedSnapshot,
  ResolvedImage,
  RuntimeContainer,
  SnapshotRef,
  SpecFactory,
  StoredContainer,
} from '../../src/commands/ports.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { ociSpecDigest } from '../../src/adapters/oci/oci-spec-factory.js';
import { digest } from './fixtures.js';

/*
 * In-memory stand-ins for the CreateContainer ports, for unit tests of the command's
 * logic. Each keeps what exists in a set, so a test can assert nothing is left behind,
 * and can fail a named method once (`failOn`).
 */

export const TEST_IMAGE: ResolvedImage = {
  id: digest('busybox-config'),
  name: 'docker.io/library/busybox:latest',
  repoTags: ['docker.io/library/busybox:latest'],
  repoDigests: [],
  names: ['docker.io/library/busybox:latest'],
  chainId: digest('busybox-chain'),
  snapshotter: 'overlayfs',
  config: { cmd: ['sh'], env: ['PATH=/bin'] },
  size: '1024',
};

class Failures {
  private readonly armed = new Map<string, Error>();
  failOn(method: string, error = new Error(`${method} failed (injected)`)): void {
    this.armed.set(method, error);
  }
  check(method: string): void {
    const error = this.armed.get(method);
    if (error) {
      this.armed.delete(method);
      throw error;
    }
  }
}

export class FakeImages extends Failures implements ImageStore {
  readonly images = new Map<string, ResolvedImage>([
    ['busybox', TEST_IMAGE],
    [TEST_IMAGE.name, TEST_IMAGE],
    [TEST_IMAGE.id, TEST_IMAGE],
  ]);
  async resolve(ref: string): Promise<ResolvedImage | undefined> {
    this.check('resolve');
    return this.images.get(ref);
  }
  async readUserFiles(): Promise<{ passwd?: string; group?: string }> {
    this.check('readUserFiles');
    return { passwd: 'root:x:0:0::/root:/bin/sh\n', group: 'root:x:0:\n' };
  }
}

export class FakeRuntime extends Failures implements ContainerRuntime {
  readonly snapshots = new Map<string, SnapshotRef>();
  readonly containers = new Map<string, RuntimeContainer>();
  async prepareSnapshot(containerId: string, image: ResolvedImage): Promise<PreparedSnapshot> {
    // The side effect happens, then the failure: compensation must still clean it up.
    const ref = { snapshotter: image.snapshotter, key: containerId, parent: image.chainId };
    this.snapshots.set(containerId, ref);
    this.check('prepareSnapshot');
    return { ...ref, mounts: [{ type: 'overlay', source: 'overlay', options: [`lowerdir=/fake/${image.chainId}`] }] };
  }
  async removeSnapshot(containerId: string): Promise<void> {
    this.check('removeSnapshot');
    this.snapshots.delete(containerId);
  }
  async createContainer(container: RuntimeContainer): Promise<void> {
    this.check('createContainer');
    this.containers.set(container.id, container);
  }
  async deleteContainer(containerId: string): Promise<void> {
    this.check('deleteContainer');
    this.containers.delete(containerId);
  }
  readonly leases = new Set<string>();
  async deleteLease(leaseId: string): Promise<void> {
    this.check('deleteLease');
    this.leases.delete(leaseId);
  }
  async hasContainer(containerId: string): Promise<boolean> {
    return this.containers.has(containerId);
  }
  async storedContainer(containerId: string): Promise<StoredContainer | undefined> {
    this.check('storedContainer');
    const c = this.containers.get(containerId);
    // Through JSON, as containerd stores them: the copy is not the object the saga holds.
    return (
      c && {
        spec: JSON.parse(JSON.stringify(c.spec)) as Record<string, unknown>,
        extension: JSON.parse(JSON.stringify(c.extension)) as Record<string, unknown>,
        snapshotter: c.snapshot.snapshotter,
        snapshotKey: c.snapshot.key,
      }
    );
  }
  async statSnapshot(key: string): Promise<{ parent: string } | undefined> {
    this.check('statSnapshot');
    const s = this.snapshots.get(key);
    return s && { parent: s.parent };
  }
}

export class FakeFiles extends Failures implements ContainerFiles {
  readonly dirs = new Set<string>();
  readonly fifos = new Map<string, ContainerIo>();
  dirsFor(containerId: string): ContainerDirs {
    return { root: `/root/${containerId}`, volatile: `/state/${containerId}` };
  }
  async createDirs(containerId: string): Promise<ContainerDirs> {
    this.dirs.add(containerId);
    this.check('createDirs');
    return this.dirsFor(containerId);
  }
  async createVolumeDirs(): Promise<void> {
    this.check('createVolumeDirs');
  }
  ioFor(containerId: string, options: { stdin: boolean; tty: boolean }): ContainerIo {
    return {
      stdout: `/state/${containerId}/stdout`,
      stderr: `/state/${containerId}/stderr`,
      terminal: options.tty,
      ...(options.stdin ? { stdin: `/state/${containerId}/stdin` } : {}),
    };
  }
  async createIo(containerId: string, options: { stdin: boolean; tty: boolean }): Promise<ContainerIo> {
    this.check('createIo');
    const io = this.ioFor(containerId, options);
    this.fifos.set(containerId, io);
    return io;
  }
  /** Host paths "made": each absent source becomes present, its path the one directory made. */
  readonly hostPaths = new Set<string>();
  async createHostPaths(sources: readonly MountSource[]): Promise<CreatedHostPath[]> {
    this.check('createHostPaths');
    return sources
      .filter((s) => s.absent)
      .map((s) => {
        const made = !this.hostPaths.has(s.path);
        this.hostPaths.add(s.path);
        return {
          field: s.field,
          path: s.path,
          created: made ? [s.path] : [],
          mode: 0o755,
          pin: { field: s.field, path: s.path, dev: 1, ino: 1 },
        };
      });
  }
  async pinMountSources(): Promise<void> {}
  async checkMountSources(): Promise<void> {
    this.check('checkMountSources');
  }
  async removeDirs(containerId: string): Promise<void> {
    this.check('removeDirs');
    this.dirs.delete(containerId);
    this.fifos.delete(containerId);
  }
}

export class FakeSpecs extends Failures implements SpecFactory {
  readonly inputs: ContainerSpecInput[] = [];
  constructor(private readonly o: { logPath?: string; mountSources?: MountSource[] } = {}) {
    super();
  }
  async containerSpec(input: ContainerSpecInput) {
    this.check('containerSpec');
    const config = input.config as {
      linux?: { securityContext?: { runAsGroup?: unknown; runAsUser?: unknown } };
    } | null;
    const sc = config?.linux?.securityContext;
    if (sc?.runAsGroup && !sc.runAsUser)
      throw new InvalidArgumentError('config.linux.security_context.run_as_group', 'set without run_as_user');
    this.inputs.push(input);
    const spec = { ociVersion: '1.0.2', process: { args: ['sh'] }, root: { path: 'rootfs' } };
    return {
      spec,
      specDigest: ociSpecDigest(spec),
      volumeHostPaths: [],
      ...(this.o.mountSources ? { mountSources: this.o.mountSources } : {}),
      logPath: this.o.logPath ?? '',
      notes: [],
    };
  }
}

export class FakeNetwork extends Failures implements SandboxNetwork {
  readonly netns = new Set<string>();
  readonly attached = new Map<string, PodNetworkRequest>();
  /** Every tearDown request, oldest first. */
  readonly tornDown: PodNetworkRequest[] = [];
  netnsPathFor(sandboxId: string): string {
    return `/run/cri-ledger/netns/${sandboxId}`;
  }
  async createNetns(sandboxId: string): Promise<string> {
    this.netns.add(sandboxId);
    this.check('createNetns');
    return this.netnsPathFor(sandboxId);
  }
  async removeNetns(sandboxId: string): Promise<void> {
    this.check('removeNetns');
    this.netns.delete(sandboxId);
  }
  async setUp(request: PodNetworkRequest) {
    this.attached.set(request.sandboxId, request);
    this.check('setUp');
    return { ip: '10.88.0.7', additionalIps: [] };
  }
  async tearDown(request: PodNetworkRequest): Promise<void> {
    this.tornDown.push(request);
    this.check('tearDown');
    this.attached.delete(request.sandboxId);
  }
}

export class FakePodFiles extends Failures implements PodFiles {
  readonly pods = new Map<string, { hostname: string; hostIpc: boolean }>();
  async create(sandboxId: string, o: { hostname: string; hostIpc: boolean }): Promise<void> {
    this.pods.set(sandboxId, { hostname: o.hostname, hostIpc: o.hostIpc });
    this.check('create');
  }
  async remove(sandboxId: string): Promise<void> {
    this.check('remove');
    this.pods.delete(sandboxId);
  }
}

export class FakeTasks extends Failures implements TaskRuntime {
  readonly running = new Map<string, number>();
  private nextPid = 1000;
  async start(containerId: string): Promise<{ pid: number }> {
    // A task that cannot start is deleted again (ContainerdTasks does), so nothing runs.
    this.check('start');
    const pid = this.nextPid++;
    this.running.set(containerId, pid);
    return { pid };
  }
  /** Exits that stop() reports, as a real task would (137 after a kill). */
  readonly exits = new Map<string, { exitCode: number; exitedAt: string; killed: boolean }>();
  async stop(
    containerId: string,
    signal: number,
  ): Promise<{ exitCode: number; exitedAt: string; killed: boolean } | undefined> {
    this.check('stop');
    if (!this.running.delete(containerId)) return this.exits.get(containerId);
    const exit = { exitCode: 128 + signal, exitedAt: '2026-11-28T10:00:05.000000000Z', killed: signal === 9 };
    this.exits.set(containerId, exit);
    return exit;
  }
  /** Every delete asked, in order. */
  readonly deleted: string[] = [];
  async delete(containerId: string): Promise<void> {
    this.check('delete');
    this.deleted.push(containerId);
    this.running.delete(containerId);
  }
  readonly updates = new Map<string, Record<string, unknown>>();
  async update(containerId: string, resources: Record<string, unknown>): Promise<void> {
    this.check('update');
    this.updates.set(containerId, resources);
  }
  async state(
    containerId: string,
  ): Promise<{ status: string; pid: number; exitCode?: number; exitedAt?: string } | undefined> {
    const pid = this.running.get(containerId);
    if (pid !== undefined) return { status: 'RUNNING', pid };
    const exit = this.exits.get(containerId);
    return exit && { status: 'STOPPED', pid: 0, exitCode: exit.exitCode, exitedAt: exit.exitedAt };
  }
}

/** Logs attached in memory: which containers have their output copied. */
export class FakeLogs extends Failures implements ContainerLogs {
  readonly attachedTo = new Map<string, string>();
  readonly reopened: string[] = [];
  async attach(containerId: string, o: { logPath: string }): Promise<void> {
    this.check('attach');
    this.attachedTo.set(containerId, o.logPath);
  }
  async abandon(containerId: string): Promise<void> {
    this.attachedTo.delete(containerId);
  }
  async reopen(containerId: string): Promise<void> {
    this.reopened.push(containerId);
  }
  attached(containerId: string): boolean {
    return this.attachedTo.has(containerId);
  }
  async detach(containerId: string): Promise<void> {
    this.attachedTo.delete(containerId);
  }
}

export class FakeSandboxSpecs extends Failures implements SandboxSpecFactory {
  async sandboxSpec(input: { sandboxId: string; netnsPath: string }) {
    this.check('sandboxSpec');
    const spec = {
      ociVersion: '1.0.2',
      process: { args: ['/pause'] },
      linux: { namespaces: [{ type: 'network', path: input.netnsPath }] },
    };
    return {
      spec,
      specDigest: ociSpecDigest(spec),
      notes: [],
    };
  }
}
