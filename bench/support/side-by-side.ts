import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeCgroupParents } from '../../test/support/cgroups.js';
import { startServe, type ServeProcess } from '../../test/support/cli.js';
import { mountsUnder, type PrivateContainerd } from '../../test/support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE } from '../../test/support/oci-image.js';
import { CONTAINERD_CRI_NAMESPACE, mountTmpfs, startContainerdWithCri } from './containerd-with-cri.js';

/** cri-ledger's containerd namespace beside containerd's CRI one. */
export const LEDGER_NAMESPACE = 'cri-ledger';

/**
 * What a side-by-side bench runs on: one private containerd with its CRI plugin on and
 * one cri-ledger on it (its default warm-up kept), busybox and pause imported in both
 * namespaces, an empty CNI dir (host-network pods), a pod log root. Both runtimes' state
 * dirs (FIFOs, sockets, netns files) are on a tmpfs, as `/run` is on a node; their roots
 * stay on the disk. Filled in as it starts, so `stopSideBySide` cleans up after a start
 * that failed half way.
 */
export interface SideBySide {
  work: string;
  logRoot: string;
  containerd?: PrivateContainerd;
  serve?: ServeProcess;
  /** cgroup parents (top-level names) the bench's pods used, removed at the end. */
  cgroupParents: string[];
}

export async function startSideBySide(s: SideBySide): Promise<{ containerd: PrivateContainerd; serve: ServeProcess }> {
  const containerd = await startContainerdWithCri({ stateOnTmpfs: true });
  s.containerd = containerd;
  for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) {
    const image = await buildTestImage(spec, join(s.work, 'images'));
    for (const namespace of [CONTAINERD_CRI_NAMESPACE, LEDGER_NAMESPACE])
      await importTestImage(containerd.address, namespace, image);
  }
  await mkdir(join(s.work, 'cni'));
  await mkdir(s.logRoot, { recursive: true });
  // startServe puts the state dir at <root>/state.
  mountTmpfs(join(s.work, 'ledger', 'state'));
  const serve = await startServe({
    warmUp: true,
    root: join(s.work, 'ledger'),
    socket: join(s.work, 'cri-ledger.sock'),
    args: [
      '--containerd-address',
      containerd.address,
      '--cni-conf-dir',
      join(s.work, 'cni'),
      '--restrict-oom-score-adj',
      'true',
    ],
  });
  s.serve = serve;
  return { containerd, serve };
}

/** Stops the service and containerd, unmounts and removes the work dir and the pods' cgroups (and their empty parents). */
export async function stopSideBySide(s: SideBySide): Promise<void> {
  await s.serve?.stop('SIGTERM').catch(() => undefined);
  await s.containerd?.stop().catch(() => undefined);
  for (const mount of mountsUnder(s.work)) execFileSync('umount', ['-l', mount]);
  await rm(s.work, { recursive: true, force: true });
  // And the parents runc makes for pods without one, named after each namespace.
  await removeCgroupParents([...s.cgroupParents, LEDGER_NAMESPACE, CONTAINERD_CRI_NAMESPACE]);
}
