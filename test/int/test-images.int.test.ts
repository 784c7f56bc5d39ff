import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { BUSYBOX_IMAGE, buildTestImage, importTestImage, PAUSE_IMAGE, type BuiltImage } from '../support/oci-image.js';

const run = promisify(execFile);
const NAMESPACE = 'cri-ledger-images-test';

describe('test images in a private containerd', () => {
  let containerd: PrivateContainerd;
  let dir: string;
  let busybox: BuiltImage;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-images-'));
    containerd = await startContainerd();
    busybox = await buildTestImage(BUSYBOX_IMAGE, dir);
    await importTestImage(containerd.address, NAMESPACE, busybox);
    await importTestImage(containerd.address, NAMESPACE, await buildTestImage(PAUSE_IMAGE, dir));
  });

  after(async () => {
    await containerd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const ctr = (...args: string[]) =>
    run('ctr', ['--address', containerd.address, '--namespace', NAMESPACE, ...args], { timeout: 30_000 });

  it('imports the busybox and pause images under their references and digests', async () => {
    const { stdout } = await ctr('images', 'ls');
    assert.match(
      stdout,
      new RegExp(
        `docker.io/library/busybox:latest\\s+application/vnd.oci.image.manifest.v1\\+json\\s+${busybox.manifestDigest}`,
      ),
    );
    assert.match(stdout, /registry\.k8s\.io\/pause:3\.6/);
  });

  it('unpacks the layer into an overlayfs snapshot named by its chain id', async () => {
    const { stdout } = await ctr('snapshots', '--snapshotter', 'overlayfs', 'ls');
    // One layer: the chain id is the layer's diff id.
    assert.match(stdout, new RegExp(busybox.layerDiffId));
  });
});
