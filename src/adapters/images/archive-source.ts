import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { CriLedgerError } from '../../domain/errors.js';
import type { ContainerdApi } from '../containerd/containerd-api.js';
import { pullImage, type ContainerdPuller, type PulledImage, type PullOptions } from '../containerd/containerd-pull.js';
import {
  hostPlatform,
  MEDIA_TYPES,
  selectManifest,
  sha256Digest,
  type Platform,
} from '../containerd/image-manifest.js';
import { normalizeImageRef } from '../containerd/image-ref.js';
import type { Descriptor, ImageSource } from './image-source.js';
import { indexTar, resolveTarFile, type TarEntry } from './tar-index.js';

/*
 * ImageSources over a local image archive, read in place (nothing is unpacked to disk):
 *
 * - an OCI image layout packed in a tar (`oci-layout`, `index.json`, `blobs/sha256/…`),
 *   as `ctr images export`, buildkit and test/support/oci-image.ts write it. Each
 *   index.json entry is an image, named by its `io.containerd.image.name` annotation or
 *   else its `org.opencontainers.image.ref.name` (a bare tag there needs `baseName`).
 * - a `docker save` tar (`manifest.json`, `<config>.json`, `<id>/layer.tar`). It has no
 *   manifest blob, so one is made: a Docker schema 2 manifest over the config and the
 *   layer files as they are. Each RepoTag is an image.
 *
 * Every blob is checked against its descriptor as it is read.
 */

/** The archive is neither layout, or its documents are inconsistent. */
export class ImageArchiveError extends CriLedgerError {}

const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const CONTAINERD_NAME = 'io.containerd.image.name';
const OCI_REF_NAME = 'org.opencontainers.image.ref.name';
const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

export type ImageArchiveFormat = 'oci-layout' | 'docker-save';

/** Where each blob of an archive is: a tar entry, or (docker save's manifest) made here. */
class ArchiveBlobs {
  constructor(
    readonly file: string,
    private readonly entries: Map<string, TarEntry>,
    private readonly made: Map<string, Buffer>,
  ) {}

  private entry(desc: Descriptor): TarEntry {
    const entry = this.entries.get(desc.digest);
    if (!entry) throw new ImageArchiveError(`${this.file} has no blob ${desc.digest}`);
    if (entry.size !== desc.size)
      throw new ImageArchiveError(
        `${this.file}: blob ${desc.digest} is ${entry.size} bytes, its descriptor says ${desc.size}`,
      );
    return entry;
  }

  async read(desc: Descriptor): Promise<Buffer> {
    const made = this.made.get(desc.digest);
    const bytes = made ?? (await readEntry(this.file, this.entry(desc), MAX_DOCUMENT_BYTES));
    if (bytes.length !== desc.size || sha256Digest(bytes) !== desc.digest)
      throw new ImageArchiveError(`${this.file}: blob ${desc.digest} does not match its descriptor`);
    return bytes;
  }

  stream(desc: Descriptor): Readable {
    const made = this.made.get(desc.digest);
    if (made) return verifying(Readable.from([made]), desc);
    const entry = this.entry(desc);
    const raw =
      entry.size === 0
        ? Readable.from([])
        : createReadStream(this.file, { start: entry.offset, end: entry.offset + entry.size - 1 });
    return verifying(raw, desc);
  }
}

/** `raw`, checked as it flows: errors on the first byte too many, or at the end on a short or wrong blob. */
function verifying(raw: Readable, desc: Descriptor): Readable {
  const hash = createHash('sha256');
  let seen = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (seen > desc.size)
        return callback(new ImageArchiveError(`blob ${desc.digest} is longer than ${desc.size} bytes`));
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const digest = `sha256:${hash.digest('hex')}`;
      if (seen !== desc.size || digest !== desc.digest)
        return callback(new ImageArchiveError(`blob ${desc.digest} read as ${digest} (${seen} bytes)`));
      callback();
    },
  });
  return pipeline(raw, check, () => undefined);
}

async function readEntry(file: string, entry: TarEntry, max: number): Promise<Buffer> {
  if (entry.size > max) throw new ImageArchiveError(`${file}: ${entry.name} is ${entry.size} bytes, more than ${max}`);
  const handle = await open(file, 'r');
  try {
    const bytes = Buffer.alloc(entry.size);
    const { bytesRead } = await handle.read(bytes, 0, entry.size, entry.offset);
    if (bytesRead !== entry.size) throw new ImageArchiveError(`${file}: ${entry.name} is truncated`);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** One image of an archive, as a pull reads it. */
export class ArchiveSource implements ImageSource {
  readonly origin: string;

  constructor(
    readonly reference: string,
    readonly format: ImageArchiveFormat,
    private readonly blobs: ArchiveBlobs,
    private readonly top: Descriptor,
  ) {
    this.origin = `${format === 'oci-layout' ? 'oci-archive' : 'docker-archive'}:${blobs.file}`;
  }

  async resolve(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    return { descriptor: { ...this.top }, bytes: await this.blobs.read(this.top) };
  }

  fetch(descriptor: Descriptor): Promise<Buffer> {
    return this.blobs.read(descriptor);
  }

  async blob(descriptor: Descriptor): Promise<Readable> {
    return this.blobs.stream(descriptor);
  }
}

export interface OpenArchiveOptions {
  /** For OCI entries named by a bare tag (`latest`): the repository, e.g. `example.com/app`. */
  baseName?: string;
  /** Which entry wins when several with one name differ by platform; the host's by default. */
  platform?: Platform;
}

export interface ImageArchive {
  file: string;
  format: ImageArchiveFormat;
  /** One source per image name in the archive. */
  images: ArchiveSource[];
}

function imageName(
  file: string,
  annotations: Record<string, string> | undefined,
  baseName: string | undefined,
): string | undefined {
  const full = annotations?.[CONTAINERD_NAME];
  if (full) return normalizeImageRef(full);
  const ref = annotations?.[OCI_REF_NAME];
  if (!ref) return undefined;
  if (ref.includes('/') || ref.includes(':') || ref.includes('@')) return normalizeImageRef(ref);
  if (!baseName) throw new ImageArchiveError(`${file}: an image is named only by the tag "${ref}"; give a baseName`);
  return normalizeImageRef(`${baseName}:${ref}`);
}

async function openOciLayout(
  file: string,
  entries: Map<string, TarEntry>,
  o: OpenArchiveOptions,
): Promise<ImageArchive> {
  const blobs = new Map<string, TarEntry>();
  for (const entry of entries.values()) {
    const match = /^blobs\/(sha256)\/([0-9a-f]{64})$/.exec(entry.name);
    const target = match && resolveTarFile(entries, entry.name);
    if (target) blobs.set(`${match[1]}:${match[2]}`, target);
  }
  const index = JSON.parse(
    (await readEntry(file, resolveTarFile(entries, 'index.json')!, MAX_DOCUMENT_BYTES)).toString('utf8'),
  ) as { manifests?: Descriptor[] };
  const byName = new Map<string, Descriptor[]>();
  for (const desc of index.manifests ?? []) {
    const name = imageName(file, desc.annotations, o.baseName);
    if (name) byName.set(name, [...(byName.get(name) ?? []), desc]);
  }
  const archiveBlobs = new ArchiveBlobs(file, blobs, new Map());
  const platform = o.platform ?? hostPlatform();
  const images = [...byName].map(([name, descs]) => {
    const chosen = descs.length === 1 ? descs[0]! : (selectManifest(descs, platform) as Descriptor | undefined);
    if (!chosen)
      throw new ImageArchiveError(`${file}: no entry named ${name} is for ${platform.os}/${platform.architecture}`);
    const { annotations: _annotations, platform: _platform, ...top } = chosen;
    return new ArchiveSource(name, 'oci-layout', archiveBlobs, top);
  });
  return { file, format: 'oci-layout', images };
}

/** sha256 of a tar entry, and whether it starts like gzip, read in one pass. */
async function digestEntry(file: string, entry: TarEntry): Promise<{ digest: string; gzip: boolean }> {
  const hash = createHash('sha256');
  let head: Buffer | undefined;
  if (entry.size > 0) {
    for await (const chunk of createReadStream(file, { start: entry.offset, end: entry.offset + entry.size - 1 })) {
      head ??= chunk as Buffer;
      hash.update(chunk as Buffer);
    }
  }
  return { digest: `sha256:${hash.digest('hex')}`, gzip: head !== undefined && head[0] === 0x1f && head[1] === 0x8b };
}

interface DockerSaveEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

async function openDockerSave(file: string, entries: Map<string, TarEntry>): Promise<ImageArchive> {
  const manifestEntry = resolveTarFile(entries, 'manifest.json')!;
  const saved = JSON.parse(
    (await readEntry(file, manifestEntry, MAX_DOCUMENT_BYTES)).toString('utf8'),
  ) as DockerSaveEntry[];
  const blobs = new Map<string, TarEntry>();
  const made = new Map<string, Buffer>();
  const layerCache = new Map<string, Descriptor>();
  const find = (name: string): TarEntry => {
    const entry = resolveTarFile(entries, name);
    if (!entry) throw new ImageArchiveError(`${file}: manifest.json names ${name}, which the archive does not have`);
    return entry;
  };
  const images: ArchiveSource[] = [];
  const archiveBlobs = new ArchiveBlobs(file, blobs, made);
  for (const image of saved) {
    const configEntry = find(image.Config);
    const configBytes = await readEntry(file, configEntry, MAX_DOCUMENT_BYTES);
    const config = { mediaType: DOCKER_CONFIG, digest: sha256Digest(configBytes), size: configBytes.length };
    blobs.set(config.digest, configEntry);
    const layers: Descriptor[] = [];
    for (const name of image.Layers) {
      const entry = find(name);
      let layer = layerCache.get(entry.name);
      if (!layer) {
        const { digest, gzip } = await digestEntry(file, entry);
        layer = { mediaType: gzip ? DOCKER_LAYER_GZIP : DOCKER_LAYER, digest, size: entry.size };
        layerCache.set(entry.name, layer);
        blobs.set(digest, entry);
      }
      layers.push(layer);
    }
    const manifestBytes = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, config, layers }),
    );
    const manifest = {
      mediaType: MEDIA_TYPES.dockerManifest,
      digest: sha256Digest(manifestBytes),
      size: manifestBytes.length,
    };
    made.set(manifest.digest, manifestBytes);
    for (const tag of image.RepoTags ?? [])
      images.push(new ArchiveSource(normalizeImageRef(tag), 'docker-save', archiveBlobs, manifest));
  }
  return { file, format: 'docker-save', images };
}

/** Reads the archive's table of contents and its image names; blobs are read later, by the pull. */
export async function openImageArchive(file: string, o: OpenArchiveOptions = {}): Promise<ImageArchive> {
  const handle = await open(file, 'r');
  let entries: Map<string, TarEntry>;
  try {
    entries = await indexTar(handle, file);
  } finally {
    await handle.close();
  }
  // Docker 25+ writes both layouts into one tar; the OCI one carries the real manifests.
  if (resolveTarFile(entries, 'index.json') && resolveTarFile(entries, 'oci-layout'))
    return openOciLayout(file, entries, o);
  if (resolveTarFile(entries, 'manifest.json')) return openDockerSave(file, entries);
  throw new ImageArchiveError(
    `${file} is neither an OCI image layout (index.json, oci-layout) nor a docker save archive (manifest.json)`,
  );
}

export interface ImportArchiveOptions extends PullOptions, OpenArchiveOptions {
  /** Pull through this puller, so an import joins pulls of the same reference in flight. */
  puller?: ContainerdPuller;
}

/** Pulls every named image of the archive `file` into containerd, one after another. */
export async function importArchive(
  api: ContainerdApi,
  file: string,
  o: ImportArchiveOptions = {},
): Promise<PulledImage[]> {
  const archive = await openImageArchive(file, o);
  if (archive.images.length === 0) throw new ImageArchiveError(`${file} names no image`);
  const pulled: PulledImage[] = [];
  for (const source of archive.images) {
    pulled.push(await (o.puller ? o.puller.pull(source, o) : pullImage(api, source, o)));
  }
  return pulled;
}
