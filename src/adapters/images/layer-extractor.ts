import type { Stats } from 'node:fs';
import { link, lchown, lstat, lutimes, mkdir, open, rm, symlink, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { CriLedgerError } from '../../domain/errors.js';
import { lsetxattr, mknod } from '../native/syscalls.js';
import type { TarEntry, TarItem } from './tar-reader.js';

/*
 * Applies one image layer (a tar stream of changes, OCI image-spec "layer" semantics)
 * to a snapshot directory, the way containerd's applier does for overlayfs: straight
 * into the snapshot's upper directory, turning OCI whiteouts into overlayfs ones (a
 * `.wh.<name>` becomes a 0/0 character device, `.wh..wh..opq` the
 * `trusted.overlay.opaque` xattr on its directory). For a snapshot with no parent
 * there is nothing below to hide, and whiteouts are dropped.
 *
 * Safety: every path stays under the root. A `..` component, a hard link to outside, or
 * an entry whose parent is a symlink is refused before anything is written at that path,
 * and files are created with O_EXCL after the old entry is removed, so nothing is ever
 * written through a link the layer planted.
 */

/** Bytes gathered before one write(2); gunzip hands on 16 KiB pieces. */
const WRITE_BATCH_BYTES = 1024 * 1024;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
const OPAQUE_XATTR = 'trusted.overlay.opaque';

/** A layer entry that would write outside the snapshot, or through a link. */
export class UnsafeLayerEntryError extends CriLedgerError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`layer entry ${JSON.stringify(path)} ${reason}`);
  }
}

export interface ExtractTarget {
  /** The directory the layer's changes go into (the overlay upper dir). */
  root: string;
  /** The parent snapshots' directories, nearest first: where missing parent directories take their owner and mode from. */
  lowerDirs: string[];
  /** `overlay`: whiteouts become overlayfs whiteouts; `none`: nothing is below, they are dropped. */
  whiteouts: 'overlay' | 'none';
}

/** The path's components; refuses `..`, so a joined path never leaves the root. */
export function layerPathParts(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeLayerEntryError(name, 'climbs out with ..');
  return parts;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

class Extraction {
  /** Directories known to exist under the root as real directories (not links). */
  private readonly dirs = new Set<string>(['']);
  private readonly dirTimes: Array<{ path: string; mtime: number }> = [];

  constructor(private readonly target: ExtractTarget) {}

  async apply(items: AsyncIterable<TarItem>): Promise<void> {
    for await (const { entry, body } of items) await this.applyEntry(entry, body);
    // Last: writing into a directory changes its mtime.
    for (const { path, mtime } of this.dirTimes.reverse()) await lutimes(path, mtime, mtime);
  }

  private async applyEntry(entry: TarEntry, body: AsyncIterable<Buffer>): Promise<void> {
    const parts = layerPathParts(entry.path);
    const base = parts.at(-1);
    const parent = parts.slice(0, -1);
    if (base === undefined) {
      // `./`: the root directory's own attributes.
      if (entry.type === 'dir') await this.setAttributes(this.target.root, entry, true);
      return;
    }
    await this.ensureDir(parent, entry.path);
    const dir = join(this.target.root, ...parent);
    if (base.startsWith(WHITEOUT_PREFIX)) return this.whiteout(dir, parent, base, entry);
    const path = join(dir, base);
    const existing = await lstatOrUndefined(path);
    if (entry.type === 'dir' && existing?.isDirectory()) {
      await this.setAttributes(path, entry, true);
      return;
    }
    if (existing) await this.remove(path, existing, parts);
    switch (entry.type) {
      case 'dir':
        await mkdir(path, { mode: 0o700 });
        this.dirs.add(parts.join('/'));
        break;
      case 'file':
        await this.writeFile(path, body);
        break;
      case 'symlink':
        await symlink(entry.linkname, path);
        break;
      case 'hardlink': {
        const targetParts = layerPathParts(entry.linkname);
        if (targetParts.length === 0) throw new UnsafeLayerEntryError(entry.path, 'links to the root directory');
        await this.ensureDir(targetParts.slice(0, -1), entry.path, false);
        const source = join(this.target.root, ...targetParts);
        const stat = await lstatOrUndefined(source);
        if (!stat || stat.isDirectory())
          throw new UnsafeLayerEntryError(
            entry.path,
            `links to ${JSON.stringify(entry.linkname)}, which is not a file of this layer`,
          );
        await link(source, path);
        return; // a hard link shares its target's inode and attributes
      }
      case 'char':
      case 'block':
      case 'fifo':
        mknod(path, entry.type, 0o600, entry.devmajor, entry.devminor);
        break;
      default: {
        const unknown: never = entry.type;
        throw new Error(`unhandled tar entry type ${String(unknown)}`);
      }
    }
    await this.setAttributes(path, entry, entry.type === 'dir');
  }

  private async whiteout(dir: string, parent: string[], base: string, entry: TarEntry): Promise<void> {
    if (this.target.whiteouts === 'none') return;
    if (base === OPAQUE_WHITEOUT) {
      lsetxattr(dir, OPAQUE_XATTR, Buffer.from('y'));
      return;
    }
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === '' || name === '.' || name === '..')
      throw new UnsafeLayerEntryError(entry.path, 'is a whiteout of nothing');
    const path = join(dir, name);
    // A whiteout hides what is below; an entry this layer made at that path stays.
    if (await lstatOrUndefined(path)) return;
    mknod(path, 'char', 0, 0, 0);
    await lchown(path, entry.uid, entry.gid);
    this.dirs.delete([...parent, name].join('/'));
  }

  /**
   * Makes sure `parts` is a real directory under the root, creating what is missing
   * with the owner and mode the parent snapshots give that directory. Refuses a
   * component that is a symlink or a file.
   */
  private async ensureDir(parts: string[], entryPath: string, create = true): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.dirs.has(rel)) continue;
      const path = join(this.target.root, rel);
      const stat = await lstatOrUndefined(path);
      if (stat?.isSymbolicLink())
        throw new UnsafeLayerEntryError(entryPath, `goes through the symlink ${JSON.stringify(rel)}`);
      if (stat && !stat.isDirectory())
        throw new UnsafeLayerEntryError(entryPath, `goes through ${JSON.stringify(rel)}, which is not a directory`);
      if (!stat) {
        if (!create)
          throw new UnsafeLayerEntryError(entryPath, `names ${JSON.stringify(rel)}, which this layer does not have`);
        const below = await this.lowerDir(rel);
        await mkdir(path, { mode: 0o700 });
        await lchown(path, below?.uid ?? 0, below?.gid ?? 0);
        await chmod(path, below ? below.mode & 0o7777 : 0o755);
      }
      this.dirs.add(rel);
    }
  }

  private async lowerDir(rel: string): Promise<Stats | undefined> {
    for (const lower of this.target.lowerDirs) {
      const stat = await lstatOrUndefined(join(lower, rel));
      if (stat) return stat.isDirectory() ? stat : undefined;
    }
    return undefined;
  }

  private async remove(path: string, existing: Stats, parts: string[]): Promise<void> {
    if (existing.isDirectory()) {
      await rm(path, { recursive: true, force: true });
      const prefix = parts.join('/');
      for (const dir of this.dirs) if (dir === prefix || dir.startsWith(`${prefix}/`)) this.dirs.delete(dir);
    } else {
      await rm(path, { force: true });
    }
  }

  private async writeFile(path: string, body: AsyncIterable<Buffer>): Promise<void> {
    // O_EXCL: the old entry is gone, so a link planted at this path is never followed.
    const handle = await open(path, 'wx', 0o600);
    try {
      let batch: Buffer[] = [];
      let batched = 0;
      for await (const piece of body) {
        batch.push(piece);
        batched += piece.length;
        if (batched >= WRITE_BATCH_BYTES) {
          await handle.writev(batch);
          batch = [];
          batched = 0;
        }
      }
      if (batched > 0) await handle.writev(batch);
    } finally {
      await handle.close();
    }
  }

  /** Owner, then mode (chown clears setuid bits), then xattrs, then times (directories' times at the end). */
  private async setAttributes(path: string, entry: TarEntry, isDir: boolean): Promise<void> {
    await lchown(path, entry.uid, entry.gid);
    if (entry.type !== 'symlink') await chmod(path, entry.mode);
    for (const [name, value] of entry.xattrs) {
      try {
        lsetxattr(path, name, value);
      } catch (error) {
        // A filesystem without that namespace (user.* on a symlink): skipped, as containerd does.
        if ((error as NodeJS.ErrnoException).code !== 'ENOTSUP' || entry.type !== 'symlink') throw error;
      }
    }
    if (isDir) this.dirTimes.push({ path, mtime: entry.mtime });
    else await lutimes(path, entry.mtime, entry.mtime);
  }
}

/** Applies the layer `items` (from readTar) onto `target`. */
export async function extractLayer(items: AsyncIterable<TarItem>, target: ExtractTarget): Promise<void> {
  await new Extraction(target).apply(items);
}
