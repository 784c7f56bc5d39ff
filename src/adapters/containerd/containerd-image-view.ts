import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, open, readlink, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ContainerdApi } from './containerd-api.js';
import { unaryCall } from './containerd-calls.js';
import { ignoreNotFound } from './containerd-errors.js';

/*
 * Reading files of an image without writing to it: a VIEW snapshot of the image's
 * chain (read-only by construction), under a lease of its own so containerd's GC
 * neither removes it mid-read nor keeps it if we crash (the lease expires), mounted
 * read-only in a temp dir. Everything is undone in reverse order, also on failure.
 */

const run = promisify(execFile);

/** Prefix of the view snapshots' keys, their leases' ids and their mount dirs. */
export const VIEW_PREFIX = 'cri-ledger-view-';
/** After this, containerd's GC may drop a view lease a crashed process left behind. */
export const DEFAULT_VIEW_LEASE_EXPIRY_MS = 10 * 60_000;
/** Larger files are refused: /etc/passwd and /etc/group are small. */
export const DEFAULT_MAX_VIEW_FILE_BYTES = 16 * 1024 * 1024;
const MOUNT_TIMEOUT_MS = 30_000;
const MAX_SYMLINK_HOPS = 40;

interface WireMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** `mount` arguments for `m` at `dir`, forced read-only. */
export function mountArgs(m: WireMount, dir: string): string[] {
  const options = m.options.filter((o) => o !== 'rw' && o !== 'ro');
  options.push('ro');
  const bind = m.type === 'bind' || options.includes('bind') || options.includes('rbind');
  // util-linux applies `bind,ro` as a bind mount followed by a read-only remount.
  return bind ? ['-o', options.join(','), m.source, dir] : ['-t', m.type, '-o', options.join(','), m.source, dir];
}

/**
 * `path` resolved inside `root` as the image would see it: symlinks (absolute ones too)
 * and `..` never leave `root`. Undefined when a component does not exist.
 */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const pending = path.split('/').filter((c) => c !== '' && c !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const component = pending.shift()!;
    if (component === '..') {
      resolved.pop();
      continue;
    }
    const full = join(root, ...resolved, component);
    const stat = await lstat(full).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw error;
    });
    if (!stat) return undefined;
    if (stat.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) throw new Error(`too many symlinks resolving ${path} in the image`);
      const target = await readlink(full);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
      continue;
    }
    resolved.push(component);
  }
  return join(root, ...resolved);
}

async function readInRoot(root: string, path: string): Promise<string | undefined> {
  const file = await resolveInRoot(root, path);
  if (file === undefined) return undefined;
  const handle = await open(file, 'r');
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return undefined;
    if (stat.size > DEFAULT_MAX_VIEW_FILE_BYTES)
      throw new Error(`${path} in the image is larger than ${DEFAULT_MAX_VIEW_FILE_BYTES} bytes`);
    return (await handle.readFile()).toString('utf8');
  } finally {
    await handle.close();
  }
}

async function unmount(dir: string): Promise<void> {
  try {
    await run('umount', [dir], { timeout: MOUNT_TIMEOUT_MS });
  } catch {
    // Busy (a reader we do not know of): detach it now, the kernel finishes later.
    await run('umount', ['-l', dir], { timeout: MOUNT_TIMEOUT_MS });
  }
}

/** Calls `fn` with the view's mount point; everything made is undone before it returns. */
async function withMountedView<T>(mounts: WireMount[], fn: (root: string) => Promise<T>): Promise<T> {
  if (mounts.length !== 1) throw new Error(`expected one mount for an image view, got ${mounts.length}`);
  const dir = await mkdtemp(join(tmpdir(), VIEW_PREFIX));
  try {
    await run('mount', mountArgs(mounts[0]!, dir), { timeout: MOUNT_TIMEOUT_MS });
    try {
      return await fn(dir);
    } finally {
      await unmount(dir);
    }
  } finally {
    // rmdir, never rm -r: if the unmount failed this fails too instead of reaching into the image.
    await rmdir(dir);
  }
}

/** Runs every cleanup; rethrows the first failure after all have run. */
async function cleanupAll(steps: Array<() => Promise<unknown>>): Promise<void> {
  let failure: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== undefined) throw failure;
}

/**
 * Reads `paths` (absolute, inside the image) from a read-only view of the snapshot
 * `parent` (an image's chain id); a missing file reads as undefined.
 */
export async function readFromImageView(
  api: ContainerdApi,
  snapshotter: string,
  parent: string,
  paths: readonly string[],
): Promise<Map<string, string | undefined>> {
  const key = `${VIEW_PREFIX}${randomBytes(8).toString('hex')}`;
  const expires = new Date(Date.now() + DEFAULT_VIEW_LEASE_EXPIRY_MS).toISOString();
  await unaryCall(api.leases, 'Create', { id: key, labels: { 'containerd.io/gc.expire': expires } });
  let result: Map<string, string | undefined> | undefined;
  let failure: unknown;
  try {
    const view = await unaryCall<{ mounts: WireMount[] }>(
      api.snapshots,
      'View',
      { snapshotter, key, parent, labels: {} },
      { lease: key },
    );
    result = await withMountedView(view.mounts, async (root) => {
      const files = new Map<string, string | undefined>();
      for (const path of paths) files.set(path, await readInRoot(root, path));
      return files;
    });
  } catch (error) {
    failure = error;
  }
  try {
    await cleanupAll([
      () => ignoreNotFound(unaryCall(api.snapshots, 'Remove', { snapshotter, key })),
      () => ignoreNotFound(unaryCall(api.leases, 'Delete', { id: key })),
    ]);
  } catch (error) {
    failure ??= error;
  }
  if (failure !== undefined) throw failure;
  return result!;
}
