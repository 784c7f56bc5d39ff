import type { Descriptor, ImageSource } from '../images/image-source.js';
import type { ExtractTarget } from '../images/layer-extractor.js';
import { openLayerJob, type LayerJob } from '../images/layer-unpacker.js';

/*
 * The streaming half of a pull (src/adapters/containerd/containerd-pull.ts): which
 * layers this process extracts itself and where to, and the read-ahead that keeps the
 * next layers' blobs coming (and decoding, in the layer worker:
 * src/adapters/images/layer-unpacker.ts) while one is extracted.
 */

export interface WireMount {
  type: string;
  source: string;
  options: string[];
}

/** How a layer's blob is compressed, for the media types this process extracts itself. */
export function layerCompression(mediaType: string): 'gzip' | 'none' | undefined {
  if (
    /^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar\+gzip$/.test(mediaType) ||
    mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip'
  )
    return 'gzip';
  if (
    /^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar$/.test(mediaType) ||
    mediaType === 'application/vnd.docker.image.rootfs.diff.tar'
  )
    return 'none';
  return undefined;
}

/**
 * Where a layer goes, from the mounts Snapshots.Prepare gave: an overlay's upper dir
 * (with its lower dirs), or the bind-mounted dir of a snapshot without a parent.
 * Undefined for anything else (another snapshotter's mounts): the classic way then.
 */
export function extractTarget(mounts: WireMount[], parent: string): ExtractTarget | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === 'bind' && parent === '' && m.source.startsWith('/'))
    return { root: m.source, lowerDirs: [], whiteouts: 'none' };
  if (m.type !== 'overlay') return undefined;
  const option = (name: string): string | undefined =>
    m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = option('upperdir');
  if (!upper?.startsWith('/')) return undefined;
  return {
    root: upper,
    lowerDirs: (option('lowerdir') ?? '').split(':').filter((d) => d !== ''),
    whiteouts: 'overlay',
  };
}

/**
 * Opens the blobs of the layers after the one being unpacked, up to `ahead` layers at
 * once, as layer-worker jobs that decode a bounded amount ahead before they hold their
 * source back: the next layers are fetched and decompressed while one is extracted.
 * `close` drops whatever was not taken.
 */
export class ReadAhead {
  private readonly opened = new Map<number, Promise<LayerJob>>();

  constructor(
    private readonly source: ImageSource,
    private readonly layers: Descriptor[],
    /** Per layer: how it is compressed, or undefined when it is not read this way. */
    private readonly compression: Array<'gzip' | 'none' | undefined>,
    private readonly ahead: number,
    private readonly onBytes: Array<(done: number) => void>,
  ) {}

  /** Layer `i`'s job; starts reading the next ones. */
  take(i: number): Promise<LayerJob> {
    for (let j = i; j < this.layers.length && j < i + this.ahead; j++) {
      if (this.compression[j] !== undefined && !this.opened.has(j)) this.opened.set(j, this.open(j));
    }
    const layer = this.opened.get(i) ?? this.open(i);
    this.opened.delete(i);
    return layer;
  }

  close(): void {
    for (const layer of this.opened.values())
      layer.then(
        (job) => job.destroy(),
        () => undefined,
      );
    this.opened.clear();
  }

  private open(i: number): Promise<LayerJob> {
    this.onBytes[i]!(0);
    const opening = this.source
      .blob(this.layers[i]!)
      .then((blob) => openLayerJob(blob, this.compression[i]!, this.onBytes[i]!));
    opening.catch(() => undefined); // seen by take()'s caller, or dropped by close()
    return opening;
  }
}
