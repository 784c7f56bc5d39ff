import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { BUSYBOX_IMAGE, buildTestImage, PAUSE_IMAGE, type BuiltImage } from '../support/oci-image.js';

const run = promisify(execFile);

describe('test images built from busybox-static', () => {
  let dir: string;
  let busybox: BuiltImage;
  let layout: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-oci-test-'));
    busybox = await buildTestImage(BUSYBOX_IMAGE, join(dir, 'out'));
    layout = join(dir, 'layout');
    await run('mkdir', ['-p', layout]);
    await run('tar', ['-xf', busybox.file, '-C', layout]);
  });

  after(() => rm(dir, { recursive: true, force: true }));

  const blob = (digest: string) => readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const sha = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

  it('writes an OCI layout whose index names the image and points at its manifest', async () => {
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].annotations['io.containerd.image.name'], 'docker.io/library/busybox:latest');
    assert.equal(index.manifests[0].digest, busybox.manifestDigest);
    assert.equal(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8')).imageLayoutVersion, '1.0.0');
  });

  it('stores every blob under its own digest, and the config names the layer by its diff id', async () => {
    const manifest = JSON.parse((await blob(busybox.manifestDigest)).toString());
    assert.equal(sha(await blob(busybox.manifestDigest)), busybox.manifestDigest);
    assert.equal(sha(await blob(manifest.config.digest)), manifest.config.digest);
    const layer = await blob(manifest.layers[0].digest);
    assert.equal(sha(layer), manifest.layers[0].digest);
    assert.equal(layer.length, manifest.layers[0].size);
    const config = JSON.parse((await blob(manifest.config.digest)).toString());
    assert.deepEqual(config.rootfs.diff_ids, [sha(gunzipSync(layer))]);
    assert.deepEqual(config.config.Cmd, ['sh']);
  });

  it('puts busybox, its applets and the test users in the layer', async () => {
    const manifest = JSON.parse((await blob(busybox.manifestDigest)).toString());
    const layerFile = join(dir, 'layer.tar');
    await run('sh', [
      '-c',
      `gunzip -c "${join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7))}" > "${layerFile}"`,
    ]);
    const { stdout } = await run('tar', ['-tvf', layerFile], { maxBuffer: 1 << 22 });
    assert.match(stdout, /\.\/bin\/busybox\n/);
    assert.match(stdout, /\.\/bin\/sh -> busybox|\.\/bin\/sh -> \.\.\/bin\/busybox/);
    const { stdout: passwd } = await run('tar', ['-xOf', layerFile, './etc/passwd']);
    assert.match(passwd, /^app:x:1000:1000:/m);
  });

  it('builds the same digests twice', async () => {
    const again = await buildTestImage(BUSYBOX_IMAGE, join(dir, 'again'));
    assert.equal(again.manifestDigest, busybox.manifestDigest);
    const pause = await buildTestImage(PAUSE_IMAGE, join(dir, 'out'));
    assert.notEqual(pause.configDigest, busybox.configDigest);
  });
});
