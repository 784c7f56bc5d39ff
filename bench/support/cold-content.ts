import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';

/*
 * A cold pull needs the image's content gone from containerd, not only from the
 * namespace that pulled it. containerd's content store is one set of blob files shared
 * by every namespace (its metadata is per namespace): while a blob file exists, a write
 * of that digest in any namespace commits at once without reading a byte (the "shared"
 * content policy). So the check is on disk, after GC: no blob file of the image's
 * digests under containerd's root, and no snapshots left in the namespaces under test.
 */

export const DEFAULT_COLD_TIMEOUT_MS = 30_000;
const POLL_MS = 50;
const SNAPSHOTTER = 'overlayfs';

/** What was still there: blob digests on disk, snapshots per namespace. */
export interface Leftovers {
  blobs: string[];
  snapshots: Record<string, number>;
}

const isEmpty = (l: Leftovers): boolean => l.blobs.length === 0 && Object.values(l.snapshots).every((n) => n === 0);

/** The blob files of `digests` still under containerd's `root`, and each namespace's snapshot count. */
export async function leftovers(root: string, apis: ContainerdApi[], digests: string[]): Promise<Leftovers> {
  const blobDir = join(root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
  const blobs = digests.filter((d) => existsSync(join(blobDir, d.slice('sha256:'.length))));
  const snapshots: Record<string, number> = {};
  for (const api of apis) {
    const pages = await collectStream<{ info: unknown[] }>(api.snapshots, 'List', { snapshotter: SNAPSHOTTER });
    snapshots[api.namespace] = pages.reduce((n, p) => n + p.info.length, 0);
  }
  return { blobs, snapshots };
}

/** Runs containerd's GC now: deleting a lease with `sync` collects before it answers. */
async function collectGarbage(api: ContainerdApi): Promise<void> {
  const id = `bench-gc-${randomBytes(6).toString('hex')}`;
  await unaryCall(api.leases, 'Create', { id });
  await unaryCall(api.leases, 'Delete', { id, sync: true });
}

/**
 * Resolves once nothing of the image is left, and says what the removal alone had left
 * (before this forced a GC): `undefined` when it was already clean. Throws when content
 * survives a forced GC for `timeoutMs`: the next pull would not be cold.
 */
export async function ensureCold(
  root: string,
  apis: ContainerdApi[],
  digests: string[],
  timeoutMs = DEFAULT_COLD_TIMEOUT_MS,
): Promise<Leftovers | undefined> {
  const first = await leftovers(root, apis, digests);
  if (isEmpty(first)) return undefined;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await collectGarbage(apis[0]!);
    const now = await leftovers(root, apis, digests);
    if (isEmpty(now)) return first;
    if (Date.now() > deadline) throw new Error(`content still in containerd after a forced GC: ${JSON.stringify(now)}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
