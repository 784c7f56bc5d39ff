import { Metadata, status as Status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { CriLedgerError } from '../../domain/errors.js';
import type { Descriptor, ImageSource } from '../images/image-source.js';
import type { LayerJob } from '../images/layer-unpacker.js';
import { UnsupportedTarEntryError } from '../images/tar-reader.js';
import type { ContainerdApi, ContainerdClient } from './containerd-api.js';
import { ContainerdCallError, hasStatus, LEASE_HEADER, unaryCall } from './containerd-calls.js';
import { ignoreNotFound } from './containerd-errors.js';
import { DEFAULT_IMAGE_SNAPSHOTTER } from './containerd-images.js';
import { extractTarget, layerCompression, ReadAhead, type WireMount } from './layer-stream.js';
import {
  chainId,
  hostPlatform,
  parseImageConfig,
  parseImageDocument,
  selectManifest,
  type OciDescriptor,
  type Platform,
} from './image-manifest.js';

/*
 * Writes an image from an ImageSource into containerd through its public API:
 *
 *   lease (gc.expire) -> each layer, in order, onto the chain of committed snapshots
 *   -> config, manifest, index(es) -> image record -> lease deleted.
 *
 * A layer is streamed from the source straight into the snapshot that containerd
 * prepares for it (gunzip and untar in this process, overlayfs whiteouts as
 * containerd's applier writes them; src/adapters/images/layer-extractor.ts), its
 * digest checked by the source and its diff id here before the snapshot is committed.
 * The compressed blob is not kept in the content store, as with containerd's CRI
 * option `discard_unpacked_layers`: the bytes cross no process boundary and are
 * written to disk once. A layer this path cannot extract (another snapshotter's
 * mounts, zstd, a GNU sparse file) goes the classic way: Content.Write, then
 * containerd's Diff.Apply. The next layers' blobs are read ahead meanwhile, a bounded
 * number of bytes each.
 *
 * Everything is created under one lease, so until the image record exists nothing is
 * collectable, and once the lease is gone (deleted at the end, or expired after a crash)
 * only what the record reaches through GC labels stays:
 *
 *   image -> index --gc.ref.content.m.<i>--> manifest --gc.ref.content.config--> config
 *                                            manifest --gc.ref.content.l.<i>--> layer
 *                                            config --gc.ref.snapshot.<snapshotter>--> top chain id (parents follow)
 */

/** After this, containerd's GC may drop the lease of a pull whose process died. */
export const DEFAULT_PULL_LEASE_EXPIRY_MS = 60 * 60_000;
/** Progress events per layer come at most this often (plus a last one at done = total). */
export const DEFAULT_PULL_PROGRESS_INTERVAL_MS = 500;
/** Bytes per Content.Write message: well under containerd's 16 MiB message limit. */
export const DEFAULT_PULL_CHUNK_BYTES = 1024 * 1024;
/** Layers read at once (the one being unpacked and those read ahead); unpacking is in layer order. */
export const DEFAULT_PULL_CONCURRENCY = 3;
/** Diff.Apply of a large layer takes far longer than an ordinary call. */
export const DEFAULT_LAYER_APPLY_TIMEOUT_MS = 30 * 60_000;
/** Prefix of pull leases and of the ingest refs and extract snapshot keys under them. */
export const PULL_PREFIX = 'cri-ledger-pull-';
const MAX_INDEX_DEPTH = 4;

export const GC_EXPIRE_LABEL = 'containerd.io/gc.expire';
export const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';
const GC_REF_CONTENT = 'containerd.io/gc.ref.content';
const GC_REF_SNAPSHOT = 'containerd.io/gc.ref.snapshot';

export interface PullProgress {
  /** The layer's (compressed) digest. */
  layer: string;
  done: number;
  total: number;
}

export interface PullOptions {
  /** The manifest of an index to follow; the host's by default. */
  platform?: Platform;
  /** The snapshotter to unpack for; `overlayfs` by default. */
  snapshotter?: string;
  onProgress?: (progress: PullProgress) => void;
  progressIntervalMs?: number;
  concurrency?: number;
  /** False sends every layer the classic way (Content.Write, then containerd's Diff.Apply); true by default. */
  streamUnpack?: boolean;
  /** Called once each layer's snapshot is committed (tests: the PullImage.LayerUnpacked failpoint). */
  afterLayer?: (index: number) => Promise<void>;
  signal?: AbortSignal;
}

export interface PulledLayer {
  digest: string;
  size: number;
  /** Time to fetch and unpack it. */
  ms: number;
  /** Its snapshot (or, the classic way, its blob) was there already: nothing was read from the source. */
  skipped: boolean;
}

export interface PulledImage {
  /** The image record's name: the source's reference. */
  name: string;
  /** The config digest (the image id). */
  id: string;
  manifestDigest: string;
  /** What the record points at: an index, or the manifest itself. */
  targetDigest: string;
  /** Sum of the layer sizes, as ContainerdImageStore reports it. */
  size: number;
  chainId: string;
  layers: PulledLayer[];
}

/** containerd refused to commit a blob: its bytes do not have the descriptor's digest or size. */
export class BlobMismatchError extends CriLedgerError {
  constructor(
    readonly digest: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`blob ${digest} does not match its descriptor: ${detail}`, options);
  }
}

/** A layer unpacked to a different diff id than the image config lists for it. */
export class LayerDiffIdMismatchError extends CriLedgerError {
  constructor(
    readonly digest: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`layer ${digest} unpacked to ${actual}, but the image config says ${expected}`);
  }
}

/** The image has no manifest for the platform asked for. */
export class NoMatchingManifestError extends CriLedgerError {}

interface WireInfo {
  digest: string;
  labels: Record<string, string>;
}

interface WriteResponse {
  action: string;
  offset: string;
}

/** One pull's view of containerd: its lease, its signal, and the calls it needs. */
class PullSession {
  constructor(
    readonly api: ContainerdApi,
    readonly lease: string,
    readonly signal: AbortSignal,
    readonly streamUnpack = true,
  ) {}

  private call<R>(client: ContainerdClient, method: string, request: object, timeoutMs?: number): Promise<R> {
    return unaryCall<R>(client, method, request, {
      lease: this.lease,
      signal: this.signal,
      ...(timeoutMs ? { timeoutMs } : {}),
    });
  }

  /** The blob's info, or undefined when the namespace does not have it. */
  async contentInfo(digest: string): Promise<WireInfo | undefined> {
    try {
      return (await this.call<{ info: WireInfo }>(this.api.content, 'Info', { digest })).info;
    } catch (error) {
      if (hasStatus(error, Status.NOT_FOUND)) return undefined;
      throw error;
    }
  }

  /**
   * Makes a blob that was already there ours for the rest of the pull (a GC between
   * now and the image record must not take it) and gives it the labels it needs.
   */
  async adoptContent(digest: string, labels: Record<string, string>, info?: WireInfo): Promise<void> {
    await this.call(this.api.leases, 'AddResource', { id: this.lease, resource: { id: digest, type: 'content' } });
    const current = info ?? (await this.contentInfo(digest));
    if (!current) throw new Error(`blob ${digest} vanished while the pull adopted it`);
    const changed = Object.keys(labels).filter((k) => current.labels[k] !== labels[k]);
    if (changed.length === 0) return;
    await this.call(this.api.content, 'Update', {
      info: { digest, labels: { ...current.labels, ...labels } },
      update_mask: { paths: changed.map((k) => `labels.${k}`) },
    });
  }

  /**
   * Streams `data` into the content store and commits it as `desc` with `labels`.
   * Returns false when containerd already had the blob (another writer got there first).
   */
  async writeContent(
    desc: Descriptor,
    data: Readable,
    labels: Record<string, string>,
    onBytes: (done: number) => void,
  ): Promise<boolean> {
    const ref = `${this.lease}-${desc.digest}`;
    const md = new Metadata();
    md.set(LEASE_HEADER, this.lease);
    const call = (this.api.content['Write'] as (md: Metadata) => ClientDuplexStream<object, WriteResponse>).call(
      this.api.content,
      md,
    );
    let committed = false;
    const finished = new Promise<void>((resolve, reject) => {
      call.on('data', (res: WriteResponse) => {
        if (res.action === 'COMMIT') committed = true;
      });
      call.on('error', (error: ServiceError) =>
        reject(
          new ContainerdCallError(
            'containerd.services.content.v1.Content.Write',
            error.code ?? Status.UNKNOWN,
            error.details ?? error.message,
            { cause: error },
          ),
        ),
      );
      call.on('end', () =>
        committed ? resolve() : reject(new Error(`content write of ${desc.digest} ended without a commit`)),
      );
    });
    // The stream may fail while we still read the source; the loop below looks at `failure`.
    let failure: unknown;
    finished.catch((error: unknown) => (failure ??= error));
    const cancel = (): void => call.cancel();
    this.signal.addEventListener('abort', cancel, { once: true });
    let offset = 0;
    let first = true;
    const send = async (message: Record<string, unknown>): Promise<void> => {
      const head = first ? { ref, total: desc.size, expected: desc.digest } : { ref };
      first = false;
      // Backpressure: grpc-js buffers what HTTP/2 flow control does not let out yet.
      if (!call.write({ ...head, ...message }))
        await Promise.race([once(call, 'drain'), finished.catch(() => undefined)]);
    };
    try {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
        await send({ action: 'WRITE', offset, data: chunk });
        offset += chunk.length;
        onBytes(offset);
      };
      for await (const piece of data) {
        if (failure !== undefined) break;
        const buffer = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array);
        for (let at = 0; at < buffer.length; ) {
          const take = Math.min(buffer.length - at, DEFAULT_PULL_CHUNK_BYTES - pendingBytes);
          pending.push(buffer.subarray(at, at + take));
          pendingBytes += take;
          at += take;
          if (pendingBytes === DEFAULT_PULL_CHUNK_BYTES) await flush();
        }
      }
      if (failure === undefined) {
        const tail = pendingBytes === 0 ? undefined : pending.length === 1 ? pending[0]! : Buffer.concat(pending);
        await send({
          action: 'COMMIT',
          offset,
          total: desc.size,
          expected: desc.digest,
          labels,
          ...(tail ? { data: tail } : {}),
        });
        offset += tail?.length ?? 0;
        call.end();
      }
      await finished;
      onBytes(offset);
      return true;
    } catch (error) {
      // Before cancelling: the cancel's own CANCELLED must not hide what went wrong.
      const cause = failure ?? error;
      data.destroy();
      call.cancel();
      if (hasStatus(cause, Status.ALREADY_EXISTS)) return false;
      await ignoreNotFound(unaryCall(this.api.content, 'Abort', { ref })).catch(() => undefined);
      if (hasStatus(cause, Status.FAILED_PRECONDITION))
        throw new BlobMismatchError(desc.digest, (cause as ContainerdCallError).details, { cause });
      throw cause;
    } finally {
      this.signal.removeEventListener('abort', cancel);
    }
  }

  /** True when the committed snapshot `name` exists; it then stays ours for the pull. */
  async adoptSnapshot(snapshotter: string, name: string): Promise<boolean> {
    try {
      const { info } = await this.call<{ info: { kind: string } }>(this.api.snapshots, 'Stat', {
        snapshotter,
        key: name,
      });
      if (info.kind !== 'COMMITTED') return false;
    } catch (error) {
      if (hasStatus(error, Status.NOT_FOUND)) return false;
      throw error;
    }
    await this.call(this.api.leases, 'AddResource', {
      id: this.lease,
      resource: { id: name, type: `snapshots/${snapshotter}` },
    });
    return true;
  }

  /**
   * Unpacks `l.layer` on top of `l.parent` into the committed snapshot `l.chain`. The
   * streaming way when the mounts and media type allow it; otherwise, or when the
   * layer holds an entry the extractor leaves to containerd, the classic way. The
   * snapshot is committed only once the bytes matched their digest and diff id.
   */
  async unpackLayer(
    l: LayerUnpack,
    decoded: (() => Promise<LayerJob>) | undefined,
    blob: () => Promise<Readable>,
    onBytes: (done: number) => void,
  ): Promise<void> {
    if (decoded) {
      const key = this.extractKey(l.index);
      const { mounts } = await this.call<{ mounts: WireMount[] }>(this.api.snapshots, 'Prepare', {
        snapshotter: l.snapshotter,
        key,
        parent: l.parent,
        labels: {},
      });
      const target = extractTarget(mounts, l.parent);
      try {
        if (target) {
          const job = await decoded();
          let diffId: string;
          try {
            diffId = await job.extract(target);
          } finally {
            job.destroy();
          }
          if (diffId !== l.diffId) throw new LayerDiffIdMismatchError(l.layer.digest, l.diffId, diffId);
          await this.commitExtract(l.snapshotter, key, l.chain);
          return;
        }
      } catch (error) {
        // An entry the extractor leaves to containerd: the blob is read again, the classic way.
        if (!(error instanceof UnsupportedTarEntryError)) {
          await ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter: l.snapshotter, key })).catch(
            () => undefined,
          );
          throw error;
        }
      }
      // Not extracted here (mounts of another shape, or an unsupported entry): the extract snapshot goes.
      await ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter: l.snapshotter, key }));
    }
    const info = await this.contentInfo(l.layer.digest);
    const had = info !== undefined || !(await this.writeContent(l.layer, await blob(), l.labels, onBytes));
    if (had) await this.adoptContent(l.layer.digest, l.labels, info);
    await this.unpack(l);
  }

  private extractKey(index: number): string {
    return `${this.lease}-extract-${index}`;
  }

  /** Commits the extract snapshot `key` as `chain`; another pull's commit of the same chain is as good. */
  private async commitExtract(snapshotter: string, key: string, chain: string): Promise<void> {
    try {
      await this.call(this.api.snapshots, 'Commit', { snapshotter, name: chain, key, labels: {} });
    } catch (error) {
      if (!hasStatus(error, Status.ALREADY_EXISTS) || !(await this.adoptSnapshot(snapshotter, chain))) throw error;
      await ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter, key }));
    }
  }

  /** The classic way: containerd's Diff.Apply of the blob in its content store. */
  private async unpack(l: LayerUnpack): Promise<void> {
    const key = this.extractKey(l.index);
    const { mounts } = await this.call<{ mounts: unknown[] }>(this.api.snapshots, 'Prepare', {
      snapshotter: l.snapshotter,
      key,
      parent: l.parent,
      labels: {},
    });
    try {
      const diff = { media_type: l.layer.mediaType, digest: l.layer.digest, size: l.layer.size, annotations: {} };
      const { applied } = await this.call<{ applied: { digest: string } }>(
        this.api.diff,
        'Apply',
        { diff, mounts, payloads: {} },
        DEFAULT_LAYER_APPLY_TIMEOUT_MS,
      );
      if (applied.digest !== l.diffId) throw new LayerDiffIdMismatchError(l.layer.digest, l.diffId, applied.digest);
      await this.commitExtract(l.snapshotter, key, l.chain);
    } catch (error) {
      await ignoreNotFound(unaryCall(this.api.snapshots, 'Remove', { snapshotter: l.snapshotter, key })).catch(
        () => undefined,
      );
      throw error;
    }
  }
}

/** One layer's place in the chain. */
interface LayerUnpack {
  snapshotter: string;
  layer: Descriptor;
  index: number;
  /** The chain id below it ('' for the first layer), and its own. */
  parent: string;
  chain: string;
  diffId: string;
  /** The blob's labels, should it go into the content store. */
  labels: Record<string, string>;
}

function toDescriptor(d: OciDescriptor): Descriptor {
  return { mediaType: d.mediaType ?? '', digest: d.digest, size: d.size };
}

/** Calls `report` at most every `intervalMs`, and always for the last byte. */
function progressReporter(
  layer: Descriptor,
  intervalMs: number,
  report?: (p: PullProgress) => void,
): (done: number) => void {
  let last = -Infinity;
  let finished = false;
  return (done) => {
    if (!report || finished) return;
    const now = Date.now();
    if (done < layer.size && now - last < intervalMs) return;
    last = now;
    finished = done >= layer.size;
    report({ layer: layer.digest, done: Math.min(done, layer.size), total: layer.size });
  };
}

/** Writes a small document (index, manifest, config) unless it is there; then labels it. */
async function storeDocument(
  session: PullSession,
  desc: Descriptor,
  bytes: Buffer,
  labels: Record<string, string>,
): Promise<void> {
  const info = await session.contentInfo(desc.digest);
  if (info || !(await session.writeContent(desc, Readable.from([bytes]), labels, () => undefined))) {
    await session.adoptContent(desc.digest, labels, info);
  }
}

async function pullUnderLease(session: PullSession, source: ImageSource, o: PullOptions): Promise<PulledImage> {
  const snapshotter = o.snapshotter ?? DEFAULT_IMAGE_SNAPSHOTTER;
  const platform = o.platform ?? hostPlatform();
  const top = await source.resolve();

  // Follow indexes down to the platform's manifest, remembering which child each chose.
  const indexes: Array<{ desc: Descriptor; bytes: Buffer; child: number }> = [];
  let desc = top.descriptor;
  let bytes = top.bytes;
  let doc = parseImageDocument(bytes, desc.mediaType);
  while (doc.kind === 'index') {
    if (indexes.length >= MAX_INDEX_DEPTH)
      throw new Error(`image index ${top.descriptor.digest} nests deeper than ${MAX_INDEX_DEPTH}`);
    const chosen = selectManifest(doc.manifests, platform);
    if (!chosen)
      throw new NoMatchingManifestError(
        `${source.reference}: index ${desc.digest} has no manifest for ${platform.os}/${platform.architecture}`,
      );
    indexes.push({ desc, bytes, child: doc.manifests.indexOf(chosen) });
    desc = toDescriptor(chosen);
    bytes = await source.fetch(desc);
    doc = parseImageDocument(bytes, desc.mediaType);
  }
  const manifest = { desc, bytes, layers: doc.layers.map(toDescriptor), config: toDescriptor(doc.config) };
  const configBytes = await source.fetch(manifest.config);
  const { diffIds } = parseImageConfig(configBytes);
  if (diffIds.length !== manifest.layers.length) {
    throw new Error(
      `${source.reference}: the manifest lists ${manifest.layers.length} layers, the config ${diffIds.length} diff ids`,
    );
  }
  const chains = diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)));

  // The caller's abort stops the layer being read and those read ahead.
  const stop = new AbortController();
  const stopOnAbort = (): void => stop.abort(session.signal.reason);
  session.signal.addEventListener('abort', stopOnAbort, { once: true });
  try {
    return await pullLayersAndRecord(
      session,
      source,
      { snapshotter, manifest, indexes, top: top.descriptor, configBytes, diffIds, chains },
      stop,
      o,
    );
  } finally {
    session.signal.removeEventListener('abort', stopOnAbort);
  }
}

interface ResolvedPull {
  snapshotter: string;
  top: Descriptor;
  indexes: Array<{ desc: Descriptor; bytes: Buffer; child: number }>;
  manifest: { desc: Descriptor; bytes: Buffer; layers: Descriptor[]; config: Descriptor };
  configBytes: Buffer;
  diffIds: string[];
  chains: string[];
}

async function pullLayersAndRecord(
  session: PullSession,
  source: ImageSource,
  r: ResolvedPull,
  stop: AbortController,
  o: PullOptions,
): Promise<PulledImage> {
  const { snapshotter, manifest, indexes, configBytes, diffIds, chains } = r;
  const interval = o.progressIntervalMs ?? DEFAULT_PULL_PROGRESS_INTERVAL_MS;
  // A layer whose chain is committed already is not read at all.
  const present: boolean[] = [];
  for (const chain of chains) present.push(await session.adoptSnapshot(snapshotter, chain));
  const reports = manifest.layers.map((layer) => progressReporter(layer, interval, o.onProgress));
  const compression = manifest.layers.map((layer, i) =>
    present[i] || !session.streamUnpack ? undefined : layerCompression(layer.mediaType),
  );
  const readAhead = new ReadAhead(
    source,
    manifest.layers,
    compression,
    Math.max(1, o.concurrency ?? DEFAULT_PULL_CONCURRENCY),
    reports,
  );
  const layers: PulledLayer[] = [];
  try {
    for (const [i, layer] of manifest.layers.entries()) {
      stop.signal.throwIfAborted();
      const started = Date.now();
      const report = reports[i]!;
      if (!present[i]) {
        // A layer read ahead reported its start when its reading began.
        if (compression[i] === undefined) report(0);
        const labels: Record<string, string> = layer.digest === diffIds[i] ? {} : { [UNCOMPRESSED_LABEL]: diffIds[i]! };
        const unpack: LayerUnpack = {
          snapshotter,
          layer,
          index: i,
          parent: i === 0 ? '' : chains[i - 1]!,
          chain: chains[i]!,
          diffId: diffIds[i]!,
          labels,
        };
        const streams: Array<{ destroy(error?: Error): void }> = [];
        const abort = (): void => streams.forEach((s) => s.destroy(stop.signal.reason as Error));
        stop.signal.addEventListener('abort', abort, { once: true });
        const decoded =
          compression[i] === undefined ? undefined : () => readAhead.take(i).then((job) => (streams.push(job), job));
        try {
          await session.unpackLayer(
            unpack,
            decoded,
            () => source.blob(layer).then((b) => (streams.push(b), b)),
            report,
          );
        } finally {
          stop.signal.removeEventListener('abort', abort);
          streams.forEach((s) => s.destroy());
        }
      }
      report(layer.size);
      layers.push({ digest: layer.digest, size: layer.size, ms: Date.now() - started, skipped: present[i]! });
      await o.afterLayer?.(i);
    }
  } finally {
    readAhead.close();
  }

  // The documents, leaves first, each labelled with what it keeps alive.
  const topChain = chains.at(-1) ?? '';
  await storeDocument(
    session,
    manifest.config,
    configBytes,
    topChain ? { [`${GC_REF_SNAPSHOT}.${snapshotter}`]: topChain } : {},
  );
  const manifestLabels: Record<string, string> = { [`${GC_REF_CONTENT}.config`]: manifest.config.digest };
  manifest.layers.forEach((layer, i) => (manifestLabels[`${GC_REF_CONTENT}.l.${i}`] = layer.digest));
  await storeDocument(session, manifest.desc, manifest.bytes, manifestLabels);
  let child = manifest.desc;
  for (const index of indexes.reverse()) {
    await storeDocument(session, index.desc, index.bytes, { [`${GC_REF_CONTENT}.m.${index.child}`]: child.digest });
    child = index.desc;
  }

  const target = { media_type: r.top.mediaType, digest: r.top.digest, size: r.top.size, annotations: {} };
  const image = { name: source.reference, labels: {}, target };
  try {
    await unaryCall(session.api.images, 'Create', { image }, { signal: session.signal });
  } catch (error) {
    if (!hasStatus(error, Status.ALREADY_EXISTS)) throw error;
    // A re-tag (or the same image again): the name now points at this target.
    await unaryCall(
      session.api.images,
      'Update',
      { image, update_mask: { paths: ['target'] } },
      { signal: session.signal },
    );
  }
  return {
    name: source.reference,
    id: manifest.config.digest,
    manifestDigest: manifest.desc.digest,
    targetDigest: r.top.digest,
    size: manifest.layers.reduce((sum, l) => sum + l.size, 0),
    chainId: topChain,
    layers,
  };
}

/**
 * Pulls the image `source` serves into containerd (content, snapshots for
 * `snapshotter`, and an image record named `source.reference`). On failure nothing of
 * it stays referenced: the pull's lease is deleted and GC collects what it wrote.
 */
export async function pullImage(api: ContainerdApi, source: ImageSource, o: PullOptions = {}): Promise<PulledImage> {
  o.signal?.throwIfAborted();
  const lease = `${PULL_PREFIX}${randomBytes(8).toString('hex')}`;
  const expires = new Date(Date.now() + DEFAULT_PULL_LEASE_EXPIRY_MS).toISOString();
  await unaryCall(
    api.leases,
    'Create',
    { id: lease, labels: { [GC_EXPIRE_LABEL]: expires } },
    o.signal ? { signal: o.signal } : {},
  );
  const signal = o.signal ?? new AbortController().signal;
  let result: PulledImage | undefined;
  let failure: unknown;
  try {
    result = await pullUnderLease(new PullSession(api, lease, signal, o.streamUnpack ?? true), source, o);
  } catch (error) {
    failure = error;
  }
  // Not under the caller's signal: an aborted pull must still give its lease up.
  try {
    await ignoreNotFound(unaryCall(api.leases, 'Delete', { id: lease }));
  } catch (error) {
    failure ??= error;
  }
  if (failure !== undefined) throw failure;
  return result!;
}

interface SharedPull {
  key: string;
  promise: Promise<PulledImage>;
  listeners: Set<(p: PullProgress) => void>;
  waiters: number;
  controller: AbortController;
}

/**
 * pullImage with one pull per reference at a time: concurrent pulls of a reference
 * join the one in flight (and see its progress). The pull is aborted only when every
 * caller waiting on it has aborted.
 */
export class ContainerdPuller {
  private readonly inFlight = new Map<string, SharedPull>();

  constructor(
    private readonly api: ContainerdApi,
    private readonly defaults: Pick<
      PullOptions,
      'platform' | 'snapshotter' | 'progressIntervalMs' | 'concurrency' | 'streamUnpack' | 'afterLayer'
    > = {},
  ) {}

  pull(source: ImageSource, o: Pick<PullOptions, 'onProgress' | 'signal'> = {}): Promise<PulledImage> {
    o.signal?.throwIfAborted();
    const platform = this.defaults.platform ?? hostPlatform();
    const key = [
      this.defaults.snapshotter ?? DEFAULT_IMAGE_SNAPSHOTTER,
      platform.os,
      platform.architecture,
      platform.variant ?? '',
      source.reference,
    ].join('\0');
    let shared = this.inFlight.get(key);
    if (!shared) {
      const controller = new AbortController();
      const listeners = new Set<(p: PullProgress) => void>();
      const onProgress = (p: PullProgress): void => listeners.forEach((listener) => listener(p));
      const promise = pullImage(this.api, source, { ...this.defaults, onProgress, signal: controller.signal });
      const entry: SharedPull = { key, promise, listeners, waiters: 0, controller };
      // Every waiter may have gone (aborted); the outcome is still handled here.
      promise.catch(() => undefined).finally(() => this.forget(entry));
      this.inFlight.set(key, entry);
      shared = entry;
    }
    return this.join(shared, o);
  }

  private forget(shared: SharedPull): void {
    if (this.inFlight.get(shared.key) === shared) this.inFlight.delete(shared.key);
  }

  private join(shared: SharedPull, o: Pick<PullOptions, 'onProgress' | 'signal'>): Promise<PulledImage> {
    shared.waiters++;
    if (o.onProgress) shared.listeners.add(o.onProgress);
    const leave = (): void => {
      if (o.onProgress) shared.listeners.delete(o.onProgress);
      shared.waiters--;
    };
    const signal = o.signal;
    if (!signal) return shared.promise.finally(leave);
    return new Promise<PulledImage>((resolve, reject) => {
      const onAbort = (): void => {
        leave();
        if (shared.waiters === 0) {
          // Nobody wants it any more: stop it, and let the next caller start afresh.
          this.forget(shared);
          shared.controller.abort(signal.reason);
        }
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const settle = (done: () => void): void => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return;
        leave();
        done();
      };
      shared.promise.then(
        (image) => settle(() => resolve(image)),
        (error: unknown) => settle(() => reject(error)),
      );
    });
  }
}
