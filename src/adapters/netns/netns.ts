/**
 * Persistent network namespaces for pod sandboxes, one file per sandbox under
 * `<stateDir>/netns/<sandboxId>`, held open by an nsfs bind mount (what `ip netns add`
 * does for /run/netns). The unshare and the bind are system calls made by the native
 * module on a thread of its own (src/adapters/native/syscalls.ts), not child processes.
 *
 * The netns directory is made a bind mount of itself with shared propagation, as
 * iproute2 does: a mount namespace copied from the host afterwards (a container's, a
 * runc helper's) then receives our unmounts, so a removed netns does not live on pinned
 * by a stale copy of its bind mount.
 *
 * Everything is keyed by the sandbox id: `createNetns` on a path that is already a
 * netns returns it, and `removeNetns` on a missing one succeeds, so a saga can redo or
 * undo either after a crash without knowing what happened.
 */
import { mkdir, open, readFile, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CriLedgerError } from '../../domain/errors.js';
import { bindNewNetns, mount, mountFlags, umount } from '../native/syscalls.js';

/** Creating or removing a network namespace failed. */
export class NetnsError extends CriLedgerError {
  constructor(
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`network namespace ${path}: ${detail}`, options);
  }
}

/** The directory that holds the netns files of `stateDir`. */
export const netnsDir = (stateDir: string): string => join(stateDir, 'netns');

/** The netns file of sandbox `id`. */
export const netnsPath = (stateDir: string, id: string): string => join(netnsDir(stateDir), id);

/** One line of /proc/self/mountinfo, the fields used here. */
export interface MountInfo {
  mountPoint: string;
  fsType: string;
  optional: string;
}

/** Parses /proc/self/mountinfo text (mount points have spaces etc. as octal escapes). */
export function parseMountInfo(text: string): MountInfo[] {
  const unescape = (s: string): string =>
    s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const fields = (left ?? '').split(' ');
    mounts.push({
      mountPoint: unescape(fields[4] ?? ''),
      optional: fields.slice(6).join(' '),
      fsType: (right ?? '').split(' ')[0] ?? '',
    });
  }
  return mounts;
}

async function mounts(): Promise<MountInfo[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Runs one system call, naming the netns path and the call when it fails. */
async function sys(path: string, what: string, call: () => Promise<void>): Promise<void> {
  try {
    await call();
  } catch (error) {
    throw new NetnsError(path, `${what} failed: ${(error as Error).message}`, { cause: error });
  }
}

// Serialises directory setup and creation in this process: two concurrent first calls
// must not both bind-mount the directory onto itself (the second mount would hide
// netns files made under the first).
let queue: Promise<unknown> = Promise.resolve();
function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => undefined);
  return next;
}

/** Makes `dir` a shared mount point of its own (bind onto itself first if it is not one). */
async function ensureSharedMountPoint(dir: string): Promise<void> {
  const own = (await mounts()).filter((m) => m.mountPoint === dir);
  const top = own.at(-1);
  if (top && /\bshared:/.test(top.optional)) return;
  if (!top)
    await sys(dir, 'bind-mounting the directory onto itself', () => mount(dir, dir, null, mountFlags().MS_BIND));
  await sys(dir, 'making the mount shared', () => mount(null, dir, null, mountFlags().MS_SHARED));
}

/**
 * Creates (or finds) the persistent network namespace of sandbox `id` and returns its
 * path. Bringing `lo` up is left to CNI's loopback plugin.
 */
export function createNetns(stateDir: string, id: string): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) {
    return Promise.reject(new NetnsError(join(netnsDir(stateDir), id), 'the id must be a plain file name'));
  }
  return serialised(async () => {
    await mkdir(netnsDir(stateDir), { recursive: true, mode: 0o755 });
    const dir = await realpath(netnsDir(stateDir));
    await ensureSharedMountPoint(dir);
    const path = join(dir, id);
    if ((await mounts()).some((m) => m.mountPoint === path && m.fsType === 'nsfs')) return path;
    // An empty file left by a crash between create and mount is reused as the target.
    await (await open(path, 'a', 0o444)).close();
    try {
      await sys(path, 'creating the namespace', () => bindNewNetns(path));
    } catch (error) {
      await rm(path, { force: true });
      throw error;
    }
    return path;
  });
}

/** Unmounts and deletes a netns file; a missing or unmounted one is fine. */
export async function removeNetns(path: string): Promise<void> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new NetnsError(path, 'cannot resolve the path', { cause: error });
  }
  // A path mounted twice (two creations racing across processes) needs two unmounts.
  while ((await mounts()).some((m) => m.mountPoint === real)) {
    await sys(real, 'unmounting', () => umount(real));
  }
  await rm(real, { force: true });
}

/** True when `path` is a mounted network namespace. */
export async function isNetns(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => undefined);
  return real !== undefined && (await mounts()).some((m) => m.mountPoint === real && m.fsType === 'nsfs');
}

/**
 * Removes every netns of `stateDir` and the directory's own bind mount (for tests and
 * uninstall; the service leaves the directory mounted, as iproute2 leaves /run/netns).
 */
export async function removeNetnsDir(stateDir: string): Promise<void> {
  const dir = await realpath(netnsDir(stateDir)).catch(() => undefined);
  if (!dir) return;
  for (const m of (await mounts()).reverse()) {
    if (m.mountPoint.startsWith(`${dir}/`)) await removeNetns(m.mountPoint);
  }
  while ((await mounts()).some((m) => m.mountPoint === dir)) await sys(dir, 'unmounting', () => umount(dir));
  await rm(dir, { recursive: true, force: true });
}
