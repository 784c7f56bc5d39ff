import { type Revalidating, staleWhileRevalidate } from '../cache/stale-while-revalidate.js';
import { status as Status } from '@grpc/grpc-js';
import type { ImageCatalog, ResolvedImage } from '../../commands/ports.js';
import { AmbiguousIdError } from '../../domain/errors.js';
import type { ContainerdApi } from './containerd-api.js';
import { collectStream, hasStatus, unaryCall } from './containerd-calls.js';
import { unavailableAsRuntimeError } from './containerd-errors.js';
import { readFromImageView } from './containerd-image-view.js';
import {
  chainId,
  hostPlatform,
  parseImageConfig,
  parseImageDocument,
  selectManifest,
  sha256Digest,
  type ImageDocument,
  type Platform,
} from './image-manifest.js';
import { tryParseImageRef } from './image-ref.js';

/** The snapshotter images are unpacked for (what importTestImage and pulls use). */
export const DEFAULT_IMAGE_SNAPSHOTTER = 'overlayfs';
/** Manifests and configs are small; a larger blob is refused rather than buffered. */
export const DEFAULT_MAX_IMAGE_DOCUMENT_BYTES = 4 * 1024 * 1024;
/**
 * How long the list of image records is reused. Pulls, imports and removals through this
 * service invalidate it at once; a change made behind its back (ctr) is seen within this.
 */
export const DEFAULT_IMAGE_RECORDS_TTL_MS = 1_000;
/** Up to this age, the image records are answered while re-read in the background. */
export const DEFAULT_IMAGE_RECORDS_STALE_MS = 30_000;
/** How many image targets' derived facts are kept (they never go stale: keyed by digest). */
export const DEFAULT_IMAGE_CACHE_ENTRIES = 512;
const MAX_INDEX_DEPTH = 4;

interface WireDescriptor {
  media_type: string;
  digest: string;
  size: string;
}

interface WireImage {
  name: string;
  target: WireDescriptor | null;
}

/** What an image record's target says, for this host's platform. */
interface TargetInfo {
  id: string;
  chainId: string;
  config: ResolvedImage['config'];
  size: string;
}

export interface ContainerdImageStoreOptions {
  api: ContainerdApi;
  /** How long a read of the image records is reused; 0 reads containerd on every lookup. */
  recordsTtlMs?: number;
  snapshotter?: string;
  platform?: Platform;
}

/**
 * ImageStore on containerd's images and content services, in the api's namespace.
 *
 * The list of image records is read at most once a second (DEFAULT_IMAGE_RECORDS_TTL_MS)
 * and forgotten whenever this service pulls, imports or removes an image: its own
 * changes are seen at once. An older list, up to DEFAULT_IMAGE_RECORDS_STALE_MS, is
 * answered at once while it is read again in the background, so kubelet's ImageStatus
 * before each container does not wait for containerd: a change made with ctr shows on
 * the next call after the one that noticed it. What a target digest
 * leads to (config, chain id, size) is content-addressed and cannot change; it is kept
 * in a bounded map.
 */
export class ContainerdImageStore implements ImageCatalog {
  private readonly api: ContainerdApi;
  private readonly snapshotter: string;
  private readonly platform: Platform;
  private readonly targets = new Map<string, TargetInfo>();
  private readonly recordsTtlMs: number;
  /** The image records: fresh for recordsTtlMs, then re-read (see the class comment). */
  private readonly records: Revalidating<WireImage[]>;
  /** /etc/passwd and /etc/group by chain id: a chain id names the layers' content, so they cannot change. */
  private readonly userFiles = new Map<string, { passwd?: string; group?: string }>();

  constructor(options: ContainerdImageStoreOptions) {
    this.api = options.api;
    this.snapshotter = options.snapshotter ?? DEFAULT_IMAGE_SNAPSHOTTER;
    this.platform = options.platform ?? hostPlatform();
    this.recordsTtlMs = options.recordsTtlMs ?? DEFAULT_IMAGE_RECORDS_TTL_MS;
    this.records = staleWhileRevalidate(
      async () => (await unaryCall<{ images: WireImage[] }>(this.api.images, 'List', { filters: [] })).images,
      // recordsTtlMs 0: every lookup reads containerd.
      {
        freshMs: this.recordsTtlMs,
        maxStaleMs: this.recordsTtlMs && Math.max(this.recordsTtlMs, DEFAULT_IMAGE_RECORDS_STALE_MS),
      },
    );
  }

  resolve(ref: string): Promise<ResolvedImage | undefined> {
    return unavailableAsRuntimeError(this.resolveImage(ref));
  }

  list(): Promise<ResolvedImage[]> {
    return unavailableAsRuntimeError(
      (async () => {
        const images = await this.records();
        const byId = new Map<string, ResolvedImage>();
        for (const record of images) {
          if (!record.target || record.target.digest === '') continue;
          const id = await this.idOf(record as WireImage & { target: WireDescriptor });
          if (id === undefined || byId.has(id)) continue;
          const image = await this.resolveImage(record.name);
          if (image) byId.set(id, image);
        }
        return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
      })(),
    );
  }

  /**
   * Forgets the cached image records: after this process changed them (a pull, an
   * import, a removal), the next lookup reads containerd again.
   */
  invalidate(): void {
    this.records.invalidate();
  }

  deleteRecord(name: string, o: { collect: boolean }): Promise<void> {
    this.invalidate();
    return unavailableAsRuntimeError(
      unaryCall(this.api.images, 'Delete', { name, sync: o.collect }).then(
        () => undefined,
        (error: unknown) => {
          if (!hasStatus(error, Status.NOT_FOUND)) throw error;
        },
      ),
    );
  }

  async readUserFiles(image: ResolvedImage): Promise<{ passwd?: string; group?: string }> {
    const key = `${image.snapshotter}/${image.chainId}`;
    const cached = this.userFiles.get(key);
    if (cached) return cached;
    const files = await unavailableAsRuntimeError(
      readFromImageView(this.api, image.snapshotter, image.chainId, ['/etc/passwd', '/etc/group']),
    );
    const result: { passwd?: string; group?: string } = {};
    const passwd = files.get('/etc/passwd');
    const group = files.get('/etc/group');
    if (passwd !== undefined) result.passwd = passwd;
    if (group !== undefined) result.group = group;
    if (this.userFiles.size >= DEFAULT_IMAGE_CACHE_ENTRIES) this.userFiles.delete(this.userFiles.keys().next().value!);
    this.userFiles.set(key, result);
    return result;
  }

  private async resolveImage(ref: string): Promise<ResolvedImage | undefined> {
    const images = await this.records();
    const records = images.filter(
      (r): r is WireImage & { target: WireDescriptor } => r.target !== null && r.target.digest !== '',
    );
    const hit = this.findByReference(records, ref) ?? (await this.findById(records, ref));
    if (!hit) return undefined;
    const info = await this.targetInfo(hit.target);
    const group: Array<WireImage & { target: WireDescriptor }> = [];
    for (const record of records) {
      if (record.target.digest === hit.target.digest || (await this.idOf(record)) === info.id) group.push(record);
    }
    const repoTags = new Set<string>();
    const repoDigests = new Set<string>();
    for (const record of group) {
      const parsed = tryParseImageRef(record.name);
      if (!parsed) continue;
      if (parsed.digest === undefined) repoTags.add(record.name);
      repoDigests.add(`${parsed.repository}@${record.target.digest}`);
    }
    return {
      id: info.id,
      name: hit.name,
      repoTags: [...repoTags].sort(),
      repoDigests: [...repoDigests].sort(),
      names: group.map((r) => r.name).sort(),
      chainId: info.chainId,
      snapshotter: this.snapshotter,
      config: structuredClone(info.config),
      size: info.size,
    };
  }

  /** By name as normalized, or by `repo@digest` of a record that points at that digest. */
  private findByReference<R extends WireImage & { target: WireDescriptor }>(records: R[], ref: string): R | undefined {
    const parsed = tryParseImageRef(ref);
    if (!parsed) return undefined;
    const name =
      parsed.digest !== undefined ? `${parsed.repository}@${parsed.digest}` : `${parsed.repository}:${parsed.tag}`;
    const exact = records.find((r) => r.name === name);
    if (exact || parsed.digest === undefined) return exact;
    return records.find(
      (r) => r.target.digest === parsed.digest && tryParseImageRef(r.name)?.repository === parsed.repository,
    );
  }

  /** By id (`sha256:<hex>` or `<hex>`) or a unique prefix of the hex. */
  private async findById<R extends WireImage & { target: WireDescriptor }>(
    records: R[],
    ref: string,
  ): Promise<R | undefined> {
    const match = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(ref);
    if (!match) return undefined;
    const prefix = `sha256:${match[1]}`;
    const byId = new Map<string, R[]>();
    for (const record of records) {
      const id = await this.idOf(record);
      if (id?.startsWith(prefix)) byId.set(id, [...(byId.get(id) ?? []), record]);
    }
    if (byId.size > 1) throw new AmbiguousIdError(ref, [...byId.keys()].sort());
    const [candidates] = byId.values();
    if (!candidates) return undefined;
    // Name the image by a tag when it has one, as ImageStatus by id would show it.
    return [...candidates].sort(
      (a, b) => Number(a.name.includes('@')) - Number(b.name.includes('@')) || a.name.localeCompare(b.name),
    )[0];
  }

  /** The record's image id; undefined when its content is missing or has no manifest for this platform. */
  private async idOf(record: WireImage & { target: WireDescriptor }): Promise<string | undefined> {
    try {
      return (await this.targetInfo(record.target)).id;
    } catch (error) {
      if (hasStatus(error, Status.UNAVAILABLE)) throw error;
      return undefined;
    }
  }

  private async targetInfo(target: WireDescriptor): Promise<TargetInfo> {
    const cached = this.targets.get(target.digest);
    if (cached) return cached;
    const manifest = await this.platformManifest(target.digest, target.media_type, Number(target.size), 0);
    const { config, diffIds } = parseImageConfig(await this.readBlob(manifest.config.digest, manifest.config.size));
    const size = manifest.layers.reduce((sum, layer) => sum + BigInt(layer.size), 0n);
    const info: TargetInfo = { id: manifest.config.digest, chainId: chainId(diffIds), config, size: size.toString() };
    if (this.targets.size >= DEFAULT_IMAGE_CACHE_ENTRIES) this.targets.delete(this.targets.keys().next().value!);
    this.targets.set(target.digest, info);
    return info;
  }

  /** Follows indexes down to the manifest for this host's platform. */
  private async platformManifest(
    digest: string,
    mediaType: string,
    size: number,
    depth: number,
  ): Promise<Extract<ImageDocument, { kind: 'manifest' }>> {
    const doc = parseImageDocument(await this.readBlob(digest, size), mediaType);
    if (doc.kind === 'manifest') return doc;
    if (depth >= MAX_INDEX_DEPTH) throw new Error(`image index ${digest} nests deeper than ${MAX_INDEX_DEPTH}`);
    const chosen = selectManifest(doc.manifests, this.platform);
    const platform = `${this.platform.os}/${this.platform.architecture}`;
    if (!chosen) throw new Error(`image index ${digest} has no manifest for ${platform}`);
    return this.platformManifest(chosen.digest, chosen.mediaType ?? '', chosen.size, depth + 1);
  }

  /** The whole blob, checked against its digest. */
  private async readBlob(digest: string, size: number): Promise<Buffer> {
    if (size > DEFAULT_MAX_IMAGE_DOCUMENT_BYTES)
      throw new Error(`blob ${digest} is ${size} bytes, more than ${DEFAULT_MAX_IMAGE_DOCUMENT_BYTES}`);
    const chunks = await collectStream<{ offset: string; data: Buffer }>(this.api.content, 'Read', {
      digest,
      offset: 0,
      size: 0,
    });
    const blob = Buffer.concat(chunks.map((c) => c.data));
    if (digest.startsWith('sha256:') && sha256Digest(blob) !== digest)
      throw new Error(`blob ${digest} does not match its digest`);
    return blob;
  }
}
