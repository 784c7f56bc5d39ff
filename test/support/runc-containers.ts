import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { ContainerdImageStore } from '../../src/adapters/containerd/containerd-images.js';
import type { ContainerdRuntime } from '../../src/adapters/containerd/containerd-runtime.js';
import type { ContainerdTasks } from '../../src/adapters/containerd/containerd-tasks.js';
import { mountsUnder, type PrivateContainerd } from './containerd.js';
import { BUSYBOX_IMAGE } from './oci-image.js';

/*
 * Containers for the adapter tests that run real runc tasks (tasks, task events, exec,
 * stats) without the CRI: a minimal runc spec on the busybox test image, and creation
 * in the order that keeps containerd's GC off the snapshot (the record first).
 */

export interface TestSpecOptions {
  hostname?: string;
  /** Merged over the default process (uid 0, the image's env, cwd /). */
  process?: Record<string, unknown>;
  /** Extra mounts after /proc and /dev. */
  mounts?: Array<Record<string, unknown>>;
  memoryLimit?: number;
}

/** Mounts some tests add: /dev/pts and a read-only /sys. */
export const DEVPTS_MOUNT = {
  destination: '/dev/pts',
  type: 'devpts',
  source: 'devpts',
  options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
};
export const SYSFS_MOUNT = {
  destination: '/sys',
  type: 'sysfs',
  source: 'sysfs',
  options: ['nosuid', 'noexec', 'nodev', 'ro'],
};

/** Machine-wide cgroup path of a test container (ids are unique per run). */
export const testCgroupPath = (id: string): string => `/cri-ledger-test-${id}`;

/** The minimal runc spec a task needs; no oomScoreAdj (runc cannot lower the shim's). */
export function runcTestSpec(id: string, args: string[], o: TestSpecOptions = {}): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: BUSYBOX_IMAGE.env,
      cwd: '/',
      noNewPrivileges: true,
      ...o.process,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: o.hostname ?? 'runc-test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      ...(o.mounts ?? []),
    ],
    linux: {
      cgroupsPath: testCgroupPath(id),
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      ...(o.memoryLimit ? { resources: { memory: { limit: o.memoryLimit } } } : {}),
    },
  };
}

/**
 * Creates container `id` from the busybox test image: the record first, then its
 * snapshot. Returns the snapshot's ref.
 */
export async function createTestContainer(
  api: ContainerdApi,
  runtime: ContainerdRuntime,
  id: string,
  args: string[],
  o: TestSpecOptions = {},
): Promise<{ snapshotter: string; key: string }> {
  const image = await new ContainerdImageStore({ api }).resolve('busybox');
  assert.ok(image, 'the busybox test image is imported');
  const snapshot = { snapshotter: image.snapshotter, key: id, parent: image.chainId };
  await runtime.createContainer({
    id,
    spec: runcTestSpec(id, args, o),
    image,
    snapshot,
    runtime: 'io.containerd.runc.v2',
    labels: {},
    extension: {},
  });
  await runtime.prepareSnapshot(id, image, {});
  return { snapshotter: snapshot.snapshotter, key: snapshot.key };
}

/**
 * The end of such a test file: whatever a failed test left (task, container, snapshot),
 * the client, the work dir, and the private containerd, which must leave neither its
 * dir nor a mount behind.
 */
export async function tearDownRuncTests(o: {
  created: readonly string[];
  tasks: ContainerdTasks | undefined;
  runtime: ContainerdRuntime | undefined;
  api: ContainerdApi | undefined;
  workDir: string | undefined;
  containerd: PrivateContainerd | undefined;
}): Promise<void> {
  for (const id of o.created) {
    await o.tasks?.kill(id, 'SIGKILL', { all: true }).catch(() => undefined);
    await o.tasks?.wait(id).catch(() => undefined);
    await o.tasks?.delete(id).catch(() => undefined);
    await o.runtime?.deleteContainer(id).catch(() => undefined);
    await o.runtime?.removeSnapshot(id, 'overlayfs').catch(() => undefined);
  }
  o.api?.close();
  if (o.workDir) await rm(o.workDir, { recursive: true, force: true });
  if (!o.containerd) return;
  const dir = dirname(o.containerd.address);
  await o.containerd.stop();
  assert.equal(existsSync(dir), false, `${dir} is left behind`);
  assert.deepEqual(mountsUnder(dir), []);
}
