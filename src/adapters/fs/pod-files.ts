import { copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { PodFiles } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { RESOURCE_ID } from '../../domain/ids.js';
import { mount, mountFlags, umount } from '../native/syscalls.js';
import type { SandboxFiles } from '../oci/spec-input.js';
import { removeTrees } from './tree-remover.js';

/** The pod's /dev/shm: 64 MiB, as Docker and containerd give it. */
export const DEFAULT_SHM_SIZE_BYTES = 64 * 1024 * 1024;

/**
 * The files a pod's containers share, keyed by the sandbox id:
 *   <root>/sandboxes/<id>/{hostname,hosts,resolv.conf}
 *   <stateDir>/sandboxes/<id>/shm      a tmpfs, unless the pod uses the host's IPC
 * Removal unmounts and deletes, and succeeds when nothing is there.
 */
export class HostPodFiles implements PodFiles {
  constructor(private readonly o: { root: string; stateDir: string; hostEtc?: string }) {}

  private dirs(sandboxId: string): { root: string; volatile: string } {
    if (!RESOURCE_ID.safeParse(sandboxId).success)
      throw new InvalidArgumentError('sandboxId', 'must be 64 hex characters');
    return { root: join(this.o.root, 'sandboxes', sandboxId), volatile: join(this.o.stateDir, 'sandboxes', sandboxId) };
  }

  /** Where a sandbox's files are, for the containers' specs; `devShm` is the host's with host IPC. */
  filesFor(sandboxId: string, hostIpc = false): SandboxFiles {
    const { root, volatile } = this.dirs(sandboxId);
    return {
      hostname: join(root, 'hostname'),
      hosts: join(root, 'hosts'),
      resolvConf: join(root, 'resolv.conf'),
      devShm: hostIpc ? '/dev/shm' : join(volatile, 'shm'),
    };
  }

  async create(
    sandboxId: string,
    o: { hostname: string; dns: { servers: string[]; searches: string[]; options: string[] } | null; hostIpc: boolean },
  ): Promise<void> {
    const { root } = this.dirs(sandboxId);
    const files = this.filesFor(sandboxId, o.hostIpc);
    const etc = this.o.hostEtc ?? '/etc';
    await mkdir(root, { recursive: true, mode: 0o755 });
    await writeFile(files.hostname, `${o.hostname}\n`, { mode: 0o644 });
    await copyFile(join(etc, 'hosts'), files.hosts);
    if (o.dns && (o.dns.servers.length > 0 || o.dns.searches.length > 0 || o.dns.options.length > 0))
      await writeFile(files.resolvConf, resolvConf(o.dns), { mode: 0o644 });
    else await copyFile(join(etc, 'resolv.conf'), files.resolvConf);
    if (!o.hostIpc) {
      await mkdir(files.devShm, { recursive: true, mode: 0o700 });
      if (!(await isMountPoint(files.devShm))) {
        const { MS_NOSUID, MS_NODEV, MS_NOEXEC } = mountFlags();
        await mount(
          'shm',
          files.devShm,
          'tmpfs',
          MS_NOSUID | MS_NODEV | MS_NOEXEC,
          `mode=1777,size=${DEFAULT_SHM_SIZE_BYTES}`,
        );
      }
    }
  }

  async remove(sandboxId: string): Promise<void> {
    const { root, volatile } = this.dirs(sandboxId);
    const shm = join(volatile, 'shm');
    // Busy (a reader we do not know of): detach it now, the kernel finishes later.
    if (await isMountPoint(shm)) await umount(shm).catch(() => umount(shm, { detach: true }));
    await removeTrees([volatile, root]);
  }
}

/** resolv.conf from a CRI DNSConfig. */
export function resolvConf(dns: { servers: string[]; searches: string[]; options: string[] }): string {
  const lines = dns.servers.map((s) => `nameserver ${s}`);
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Whether `path` is a mount point: its device differs from its parent's (each tmpfs
 * mount has a device of its own). Two stats instead of reading and parsing
 * /proc/self/mountinfo, which grows with every pod on the node. A missing path is not.
 */
async function isMountPoint(path: string): Promise<boolean> {
  const [own, parent] = await Promise.all([
    stat(path).catch(() => undefined),
    stat(dirname(path)).catch(() => undefined),
  ]);
  return own !== undefined && parent !== undefined && own.dev !== parent.dev;
}
