import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { connectContainerd } from '../../src/adapters/containerd/containerd-api.js';
import { chainId } from '../../src/adapters/containerd/image-manifest.js';
import { importArchive } from '../../src/adapters/images/archive-source.js';

/*
 * Test images, built here from Debian's busybox-static: nothing is pulled. Each image
 * is one layer (the static busybox, a symlink per applet, and a few /etc files) written
 * as an OCI image layout and packed into a tar archive that importArchive reads.
 * Builds are reproducible (fixed mtimes, owners and order), so digests are stable.
 */

const run = promisify(execFile);

/** Where Debian's busybox-static puts its binary. */
export const BUSYBOX = '/bin/busybox';
const EPOCH = '2026-01-01T00:00:00Z';

export interface TestImageSpec {
  /** The reference the image is imported as, e.g. `docker.io/library/busybox:latest`. */
  ref: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  stopSignal?: string;
  volumes?: string[];
  /** Extra files: path in the image -> content. */
  files?: Record<string, string>;
}

export interface BuiltImage {
  file: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  layerDiffId: string;
}

const PASSWD =
  'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\napp:x:1000:\nextra:x:2000:app\n';

/** busybox with a shell, a non-root `app` user (uid 1000, also in group `extra` 2000). */
export const BUSYBOX_IMAGE: TestImageSpec = {
  ref: 'docker.io/library/busybox:latest',
  cmd: ['sh'],
  env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  files: { '/etc/passwd': PASSWD, '/etc/group': GROUP },
};

/** A pause image: sleeps until SIGTERM, then exits 0. */
export const PAUSE_IMAGE: TestImageSpec = {
  ref: 'registry.k8s.io/pause:3.6',
  entrypoint: ['/bin/sh', '-c', "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"],
  files: { '/etc/passwd': PASSWD, '/etc/group': GROUP },
};

function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function applets(): Promise<string[]> {
  const { stdout } = await run(BUSYBOX, ['--list-full']);
  return stdout.split('\n').filter((l) => l.length > 0 && l !== 'bin/busybox');
}

async function stageRootfs(dir: string, spec: TestImageSpec): Promise<void> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  for (const applet of await applets()) {
    const path = join(dir, applet);
    await mkdir(dirname(path), { recursive: true });
    const depth = applet.split('/').length - 1;
    await symlink(`${'../'.repeat(depth)}bin/busybox`, path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
  for (const d of ['etc', 'tmp', 'root', 'home/app', 'proc', 'sys', 'dev'])
    await mkdir(join(dir, d), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o1777);
  for (const [path, content] of Object.entries(spec.files ?? {})) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

async function reproducibleTar(dir: string, out: string): Promise<void> {
  await run('tar', [
    '--sort=name',
    `--mtime=${EPOCH}`,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '-C',
    dir,
    '-cf',
    out,
    '.',
  ]);
}

/** Builds `spec` as an OCI image layout archive in `outDir`; returns its file and digests. */
export async function buildTestImage(spec: TestImageSpec, outDir: string): Promise<BuiltImage> {
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-image-'));
  try {
    const rootfs = join(work, 'rootfs');
    await stageRootfs(rootfs, spec);
    const layerTar = join(work, 'layer.tar');
    await reproducibleTar(rootfs, layerTar);
    const layer = await readFile(layerTar);
    const layerGz = gzipSync(layer, { level: 6 });
    const diffId = sha256(layer);
    const config = JSON.stringify({
      created: EPOCH,
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: {
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        Env: spec.env ?? ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
        ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.stopSignal ? { StopSignal: spec.stopSignal } : {}),
        ...(spec.volumes ? { Volumes: Object.fromEntries(spec.volumes.map((v) => [v, {}])) } : {}),
      },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created: EPOCH, created_by: 'cri-ledger test support: busybox-static' }],
    });
    const layerDesc = {
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: sha256(layerGz),
      size: layerGz.length,
    };
    const configDesc = {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha256(config),
      size: Buffer.byteLength(config),
    };
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: configDesc,
      layers: [layerDesc],
    });
    const manifestDesc = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: sha256(manifest),
      size: Buffer.byteLength(manifest),
      annotations: { 'io.containerd.image.name': spec.ref, 'org.opencontainers.image.ref.name': spec.ref },
      platform: { architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux' },
    };
    const layout = join(work, 'layout');
    const blobs = join(layout, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const blob = (digest: string, data: Buffer | string) =>
      writeFile(join(blobs, digest.slice('sha256:'.length)), data);
    await blob(layerDesc.digest, layerGz);
    await blob(configDesc.digest, config);
    await blob(manifestDesc.digest, manifest);
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [manifestDesc],
      }),
    );
    await mkdir(outDir, { recursive: true });
    const file = join(outDir, `${spec.ref.replace(/[^A-Za-z0-9._-]/g, '_')}.oci.tar`);
    await reproducibleTar(layout, file);
    return {
      file,
      ref: spec.ref,
      manifestDigest: manifestDesc.digest,
      configDigest: configDesc.digest,
      layerDiffId: diffId,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Imports a built image into a containerd namespace and unpacks it for the overlayfs
 * snapshotter, with cri-ledger's own archive import.
 */
export async function importTestImage(address: string, namespace: string, image: BuiltImage): Promise<void> {
  const api = connectContainerd({ address, namespace });
  try {
    await importArchive(api, image.file, { snapshotter: 'overlayfs' });
  } finally {
    api.close();
  }
}

/** One layer of a layered test image: busybox (as in buildTestImage) and/or some files. */
export interface TestLayer {
  busybox?: boolean;
  /** Path in the image -> content. */
  files: Record<string, string>;
  gzip: boolean;
}

export interface BuiltLayeredImage {
  ref: string;
  /** The OCI image layout archive, its index entry named `ref`. */
  ociFile: string;
  /** A `docker save` archive of the same config and layer blobs, tagged `dockerTag`. */
  dockerFile: string;
  dockerTag: string;
  manifestDigest: string;
  configDigest: string;
  layers: Array<{ mediaType: string; digest: string; size: number; diffId: string }>;
  chainIds: string[];
}

/**
 * A multi-layer image as an OCI archive and as a docker save archive, from the same
 * config and layer blobs (a gzip layer stays gzip in the docker archive too).
 */
export async function buildLayeredTestImage(
  ref: string,
  dockerTag: string,
  layers: TestLayer[],
  outDir: string,
): Promise<BuiltLayeredImage> {
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-layered-'));
  try {
    const blobs: Array<{ mediaType: string; digest: string; size: number; diffId: string; data: Buffer }> = [];
    for (const [i, layer] of layers.entries()) {
      const rootfs = join(work, `rootfs${i}`);
      if (layer.busybox) await stageRootfs(rootfs, { ref });
      for (const [path, content] of Object.entries(layer.files)) {
        await mkdir(dirname(join(rootfs, path)), { recursive: true });
        await writeFile(join(rootfs, path), content);
      }
      await reproducibleTar(rootfs, join(work, `layer${i}.tar`));
      const tar = await readFile(join(work, `layer${i}.tar`));
      const data = layer.gzip ? gzipSync(tar, { level: 6 }) : tar;
      const mediaType = `application/vnd.oci.image.layer.v1.tar${layer.gzip ? '+gzip' : ''}`;
      blobs.push({ mediaType, digest: sha256(data), size: data.length, diffId: sha256(tar), data });
    }
    const diffIds = blobs.map((b) => b.diffId);
    const architecture = process.arch === 'x64' ? 'amd64' : process.arch;
    const config = JSON.stringify({
      created: EPOCH,
      architecture,
      os: 'linux',
      config: { Cmd: ['sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: blobs.map(() => ({ created: EPOCH, created_by: 'cri-ledger test support: layered' })),
    });
    const configDesc = {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha256(config),
      size: Buffer.byteLength(config),
    };
    const layerDescs = blobs.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: configDesc,
      layers: layerDescs,
    });
    const manifestDesc = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: sha256(manifest),
      size: Buffer.byteLength(manifest),
      annotations: { 'org.opencontainers.image.ref.name': ref },
      platform: { architecture, os: 'linux' },
    };

    const layout = join(work, 'layout');
    await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
    const blob = (digest: string, data: Buffer | string) =>
      writeFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
    for (const b of blobs) await blob(b.digest, b.data);
    await blob(configDesc.digest, config);
    await blob(manifestDesc.digest, manifest);
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [manifestDesc] }));

    const saved = join(work, 'docker');
    await mkdir(saved, { recursive: true });
    const configFile = `${configDesc.digest.slice('sha256:'.length)}.json`;
    await writeFile(join(saved, configFile), config);
    const layerFiles: string[] = [];
    for (const [i, b] of blobs.entries()) {
      await mkdir(join(saved, `layer${i}`));
      await writeFile(join(saved, `layer${i}`, 'layer.tar'), b.data);
      layerFiles.push(`layer${i}/layer.tar`);
    }
    await writeFile(
      join(saved, 'manifest.json'),
      JSON.stringify([{ Config: configFile, RepoTags: [dockerTag], Layers: layerFiles }]),
    );

    await mkdir(outDir, { recursive: true });
    const base = join(outDir, ref.replace(/[^A-Za-z0-9._-]/g, '_'));
    await reproducibleTar(layout, `${base}.oci.tar`);
    await reproducibleTar(saved, `${base}.docker.tar`);
    return {
      ref,
      ociFile: `${base}.oci.tar`,
      dockerFile: `${base}.docker.tar`,
      dockerTag,
      manifestDigest: manifestDesc.digest,
      configDigest: configDesc.digest,
      layers: blobs.map(({ mediaType, digest, size, diffId }) => ({ mediaType, digest, size, diffId })),
      chainIds: diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1))),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
