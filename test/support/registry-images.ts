import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { hostPlatform, type Platform } from '../../src/adapters/containerd/image-manifest.js';
import { BUSYBOX_IMAGE, buildTestImage } from './oci-image.js';
import type { TestRegistry } from './registry.js';

/*
 * Images to push to a test registry, composed from the busybox-static layer that
 * oci-image.ts builds plus small extra layers, in OCI or Docker schema 2 form; and a
 * push over the registry HTTP API (monolithic blob upload, manifest PUT).
 */

const run = promisify(execFile);
const EPOCH = '2026-01-01T00:00:00Z';

export type ImageFormat = 'oci' | 'docker';

/** A piece of content and the descriptor that names it. */
export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  data: Buffer;
}

export interface ComposedImage {
  manifest: Blob;
  config: Blob;
  layers: Blob[];
  platform: Platform;
}

export interface ComposedIndex {
  index: Blob;
  images: ComposedImage[];
}

/** A layer: its gzipped blob and the digest of the uncompressed tar. */
export interface Layer {
  gzip: Buffer;
  diffId: string;
}

export interface BaseImage {
  layer: Layer;
  /** The busybox config JSON (its `config` part: Cmd, Env). */
  config: { config: Record<string, unknown> };
}

const TYPES = {
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  },
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  },
} as const;

function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function blob(mediaType: string, data: Buffer | string): Blob {
  const bytes = Buffer.from(data);
  return { mediaType, digest: sha256(bytes), size: bytes.length, data: bytes };
}

/** A platform that is not this host's, for the other entry of a manifest list. */
export function otherPlatform(): Platform {
  return hostPlatform().architecture === 'amd64'
    ? { os: 'linux', architecture: 'arm64', variant: 'v8' }
    : { os: 'linux', architecture: 'amd64' };
}

/** The busybox layer and config, read back out of the OCI archive oci-image.ts builds. */
export async function busyboxBase(): Promise<BaseImage> {
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-registry-image-'));
  try {
    const built = await buildTestImage(BUSYBOX_IMAGE, work);
    const layout = join(work, 'layout');
    await mkdir(layout);
    await run('tar', ['-xf', built.file, '-C', layout]);
    const read = (digest: string) => readFile(join(layout, 'blobs/sha256', digest.slice('sha256:'.length)));
    const manifest = JSON.parse((await read(built.manifestDigest)).toString('utf8')) as {
      layers: { digest: string }[];
    };
    const config = JSON.parse((await read(built.configDigest)).toString('utf8')) as BaseImage['config'];
    return { layer: { gzip: await read(manifest.layers[0]!.digest), diffId: built.layerDiffId }, config };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A layer holding `files` (path -> text or bytes), built reproducibly. */
export async function fileLayer(files: Record<string, string | Uint8Array>): Promise<Layer> {
  const work = await mkdtemp(join(tmpdir(), 'cri-ledger-layer-'));
  try {
    const root = join(work, 'root');
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
    }
    const tar = join(work, 'layer.tar');
    await run('tar', [
      '--sort=name',
      `--mtime=${EPOCH}`,
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--format=posix',
      '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
      '-C',
      root,
      '-cf',
      tar,
      '.',
    ]);
    const data = await readFile(tar);
    return { gzip: gzipSync(data), diffId: sha256(data) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** An image of the busybox layer plus `extraLayers`, with `user` set when given. */
export function composeImage(
  base: BaseImage,
  options: { format?: ImageFormat; extraLayers?: Layer[]; user?: string; platform?: Platform } = {},
): ComposedImage {
  const types = TYPES[options.format ?? 'oci'];
  const platform = options.platform ?? hostPlatform();
  const layers = [base.layer, ...(options.extraLayers ?? [])];
  const config = blob(
    types.config,
    JSON.stringify({
      created: EPOCH,
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      os: platform.os,
      config: { ...base.config.config, ...(options.user ? { User: options.user } : {}) },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const layerBlobs = layers.map((l) => blob(types.layer, l.gzip));
  const descriptor = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = blob(
    types.manifest,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: types.manifest,
      config: descriptor(config),
      layers: layerBlobs.map(descriptor),
    }),
  );
  return { manifest, config, layers: layerBlobs, platform };
}

/** An index (OCI) or manifest list (Docker) over `images`, each entry naming its platform. */
export function composeIndex(images: ComposedImage[], format: ImageFormat = 'oci'): ComposedIndex {
  const type = TYPES[format].index;
  const manifests = images.map((i) => ({
    mediaType: i.manifest.mediaType,
    digest: i.manifest.digest,
    size: i.manifest.size,
    platform: i.platform,
  }));
  return { index: blob(type, JSON.stringify({ schemaVersion: 2, mediaType: type, manifests })), images };
}

async function check(res: Response, what: string, expected: number[]): Promise<void> {
  if (!expected.includes(res.status)) throw new Error(`${what}: ${res.status} ${await res.text()}`);
}

async function pushBlob(registry: TestRegistry, repository: string, b: Blob): Promise<void> {
  const headers: Record<string, string> = {};
  const authorization = registry.adminAuthorization(repository);
  if (authorization) headers.authorization = authorization;
  const head = await fetch(`${registry.url}/v2/${repository}/blobs/${b.digest}`, { method: 'HEAD', headers });
  if (head.status === 200) return;
  const start = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
  await check(start, `starting the upload of ${b.digest}`, [202]);
  const location = new URL(start.headers.get('location') ?? '', registry.url);
  location.searchParams.set('digest', b.digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { ...headers, 'content-type': 'application/octet-stream' },
    body: b.data,
  });
  await check(put, `uploading ${b.digest}`, [201]);
}

async function pushManifest(registry: TestRegistry, repository: string, m: Blob, reference: string): Promise<void> {
  const headers: Record<string, string> = { 'content-type': m.mediaType };
  const authorization = registry.adminAuthorization(repository);
  if (authorization) headers.authorization = authorization;
  const put = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers,
    body: m.data,
  });
  await check(put, `putting manifest ${reference}`, [201]);
}

/** Pushes the blobs, then the manifest under `tag` (by digest when no tag). */
export async function pushImage(
  registry: TestRegistry,
  repository: string,
  image: ComposedImage,
  tag?: string,
): Promise<void> {
  for (const b of [image.config, ...image.layers]) await pushBlob(registry, repository, b);
  await pushManifest(registry, repository, image.manifest, tag ?? image.manifest.digest);
}

/** Pushes every image by digest, then the index under `tag`. */
export async function pushIndex(
  registry: TestRegistry,
  repository: string,
  index: ComposedIndex,
  tag: string,
): Promise<void> {
  for (const image of index.images) await pushImage(registry, repository, image);
  await pushManifest(registry, repository, index.index, tag);
}
