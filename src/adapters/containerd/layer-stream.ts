import { createHash } from 'node:crypto';
import { pipeline as pipe, Transform, type Readable, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Descriptor, ImageSource } from '../images/image-source.js';
import type { ExtractTarget } from '../images/layer-extractor.js';

/*
 * The streaming half of a pull (src/adapters/containerd/containerd-pull.ts): which
 * layers this process extracts itself and where to, a layer's blob decoded into its
 * tar (counted, gunzipped, hashed into its diff id), and the read-ahead that keeps the
 * next layers' blobs coming while one is extracted.
 */

/** How much decompressed tar of a layer that waits for its turn is read ahead, at most. */
export const DEFAULT_PULL_READ_AHEAD_BYTES = 32 * 1024 * 1024;
/** gunzip's output pieces: far above zlib's 16 KiB default, since each is a trip to the thread pool and back (1 MiB: a fifth of the main thread's time of 256 KiB). */
const GUNZIP_CHUNK_BYTES = 1024 * 1024;

export interface WireMount {
  type: string;
  source: string;
  options: string[];
}

/** How a layer's blob is compressed, for the media types this process extracts itself. */
export function layerCompression(mediaType: string): 'gzip' | 'none' | undefined {
  if (/^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar\+gzip$/.test(mediaType) || mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip') return 'gzip';
  if (/^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar$/.test(mediaType) || mediaType === 'application/vnd.docker.image.rootfs.diff.tar') return 'none';
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
  if (m.type === 'bind' && parent === '' && m.source.startsWith('/')) return { root: m.source, lowerDirs: [], whiteouts: 'none' };
  if (m.type !== 'overlay') return undefined;
  const option = (name: string): string | undefined => m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = option('upperdir');
  if (!upper?.startsWith('/')) return undefined;
  return { root: upper, lowerDirs: (option('lowerdir') ?? '').split(':').filter((d) => d !== ''), whiteouts: 'overlay' };
}

/** A layer's tar, decompressed as it is read; `diffId()` is its digest once it ended. */
export interface DecodedLayer {
  tar: Readable;
  diffId(): string;
}

/**
 * `blob` counted (compressed bytes, for progress), decompressed, and hashed into its
 * diff id, buffering up to `bufferBytes` of tar ahead of its reader. The tar errors if
 * the blob does (the source's digest check included), and ends only after it did.
 */
function decodeLayer(blob: Readable, compression: 'gzip' | 'none', bufferBytes: number, onBytes: (done: number) => void): DecodedLayer {
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      onBytes(seen);
      callback(null, chunk);
    },
  });
  const hash = createHash('sha256');
  let diffId: string | undefined;
  const tar = new Transform({
    readableHighWaterMark: bufferBytes,
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      diffId = `sha256:${hash.digest('hex')}`;
      callback();
    },
  });
  const stages = compression === 'gzip' ? [blob, counter, createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES }), tar] : [blob, counter, tar];
  pipe(stages, () => undefined); // an error of any stage reaches the tar's reader
  return {
    tar,
    diffId: () => {
      if (diffId === undefined) throw new Error('the layer was not read to its end');
      return diffId;
    },
  };
}

/**
 * Opens and decodes the blobs of the layers after the one being unpacked, up to
 * `ahead` layers at once, each buffering at most DEFAULT_PULL_READ_AHEAD_BYTES of tar
 * before it holds its source back: the next layers are fetched and decompressed while
 * one is extracted. `close` drops whatever was not taken.
 */
export class ReadAhead {
  private readonly opened = new Map<number, Promise<DecodedLayer>>();

  constructor(
    private readonly source: ImageSource,
    private readonly layers: Descriptor[],
    /** Per layer: how it is compressed, or undefined when it is not read this way. */
    private readonly compression: Array<'gzip' | 'none' | undefined>,
    private readonly ahead: number,
    private readonly onBytes: Array<(done: number) => void>,
  ) {}

  /** Layer `i`, decoded; starts reading the next ones. */
  take(i: number): Promise<DecodedLayer> {
    for (let j = i; j < this.layers.length && j < i + this.ahead; j++) {
      if (this.compression[j] !== undefined && !this.opened.has(j)) this.opened.set(j, this.open(j));
    }
    const layer = this.opened.get(i) ?? this.open(i);
    this.opened.delete(i);
    return layer;
  }

  close(): void {
    for (const layer of this.opened.values()) layer.then((l) => l.tar.destroy(), () => undefined);
    this.opened.clear();
  }

  private open(i: number): Promise<DecodedLayer> {
    this.onBytes[i]!(0);
    const opening = this.source.blob(this.layers[i]!).then((blob) => decodeLayer(blob, this.compression[i]!, DEFAULT_PULL_READ_AHEAD_BYTES, this.onBytes[i]!));
    opening.catch(() => undefined); // seen by take()'s caller, or dropped by close()
    return opening;
  }
}
