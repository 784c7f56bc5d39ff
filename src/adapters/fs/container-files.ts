import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import type { ContainerDirs, ContainerFiles, ContainerIo, CreatedHostPath, MountSource } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { RESOURCE_ID } from '../../domain/ids.js';
import { mkfifo } from '../native/syscalls.js';
import { checkMountSource, createHostDirectory } from './host-paths.js';
import { removeTrees } from './tree-remover.js';

/** The pins of a container's mount host paths, in its persistent dir. */
const MOUNT_SOURCES_FILE = 'mount-sources.json';

/**
 * Container directories on the host, keyed by the container id:
 *   <root>/containers/<id>       persistent: image volumes live here
 *   <stateDir>/containers/<id>   volatile (tmpfs /run): the IO FIFOs
 * Removal succeeds when nothing is there, so compensation can repeat it after a crash.
 */
export class HostContainerFiles implements ContainerFiles {
  constructor(private readonly o: { root: string; stateDir: string }) {}

  dirsFor(containerId: string): ContainerDirs {
    if (!RESOURCE_ID.safeParse(containerId).success)
      throw new InvalidArgumentError('containerId', 'must be 64 hex characters');
    return {
      root: join(this.o.root, 'containers', containerId),
      volatile: join(this.o.stateDir, 'containers', containerId),
    };
  }

  async createDirs(containerId: string): Promise<ContainerDirs> {
    const dirs = this.dirsFor(containerId);
    await mkdir(dirs.root, { recursive: true, mode: 0o700 });
    await mkdir(dirs.volatile, { recursive: true, mode: 0o700 });
    return dirs;
  }

  async createVolumeDirs(containerId: string, hostPaths: readonly string[]): Promise<void> {
    const { root } = this.dirsFor(containerId);
    for (const path of hostPaths) {
      // The spec factory checked these already; a path outside the root would be a bug, not input.
      const rel = relative(root, resolve(path));
      if (rel.startsWith('..') || rel.startsWith(sep))
        throw new InvalidArgumentError('volume', `${path} is outside ${root}`);
      await mkdir(path, { recursive: true, mode: 0o755 });
    }
  }

  ioFor(containerId: string, options: { stdin: boolean; tty: boolean }): ContainerIo {
    const { volatile } = this.dirsFor(containerId);
    const stdout = join(volatile, 'stdout');
    // With a TTY, stdout and stderr are one stream.
    return {
      stdout,
      stderr: options.tty ? stdout : join(volatile, 'stderr'),
      terminal: options.tty,
      ...(options.stdin ? { stdin: join(volatile, 'stdin') } : {}),
    };
  }

  async createIo(containerId: string, options: { stdin: boolean; tty: boolean }): Promise<ContainerIo> {
    const io = this.ioFor(containerId, options);
    for (const path of new Set([io.stdout, io.stderr, ...(io.stdin ? [io.stdin] : [])])) {
      try {
        mkfifo(path, 0o600);
      } catch (error) {
        // Made by an earlier try of this step (a retry after a crash): a FIFO is fine.
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        if (!(await lstat(path)).isFIFO()) throw new InvalidArgumentError('io', `${path} exists and is not a FIFO`);
      }
    }
    return io;
  }

  async createHostPaths(sources: readonly MountSource[]): Promise<CreatedHostPath[]> {
    return sources.filter((source) => source.absent).map(createHostDirectory);
  }

  async pinMountSources(containerId: string, sources: readonly MountSource[]): Promise<void> {
    if (sources.length === 0) return;
    await writeFile(join(this.dirsFor(containerId).root, MOUNT_SOURCES_FILE), JSON.stringify(sources), { mode: 0o600 });
  }

  async checkMountSources(containerId: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(join(this.dirsFor(containerId).root, MOUNT_SOURCES_FILE), 'utf8');
    } catch (error) {
      // No file: a container without host mounts (or made before pins were kept).
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const pin of JSON.parse(text) as MountSource[]) checkMountSource(pin);
  }

  async removeDirs(containerId: string): Promise<void> {
    const dirs = this.dirsFor(containerId);
    await removeTrees([dirs.volatile, dirs.root]);
  }
}
