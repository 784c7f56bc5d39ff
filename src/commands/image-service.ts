import { imageStream } from '../domain/ids.js';
import type { Ledger } from './ledger.js';
import type { ImageCatalog, ImagePuller, PullProgress, PullResult, RegistryAuth } from './ports.js';
import { NO_FAILPOINTS, type Failpoints } from './saga.js';

/*
 * PullImage and RemoveImage as events in the image's stream, `image-<name>` (name = the
 * normalized reference):
 *
 *   PullImage    ImagePullStarted, ImagePullProgress (per layer, at a bounded rate),
 *                then ImagePulled (id, digest, size, duration, per-layer timings) or
 *                ImagePullFailed (the reason); concurrent pulls of one reference share
 *                one download and one set of events
 *   RemoveImage  every name of the image is deleted (as containerd's CRI does), the last
 *                one with containerd's GC run, so unreferenced content and snapshots go;
 *                ImageRemoved for each; an absent image is fine
 *
 * Appends use the `any` expected version: an image stream has no saga, and the events
 * of one pull are ordered by the single in-flight promise that writes them.
 */

export interface ImageServiceDeps {
  ledger: Ledger;
  images: ImageCatalog;
  puller: ImagePuller;
  /** Milliseconds on a monotonic clock, for durations. */
  clock: () => number;
  /** Tests only: PullImage.ImagePullStarted, PullImage.Pulled (before ImagePulled is recorded), PullImage.ImagePulled. */
  failpoints?: Failpoints;
}

export interface PullImageCommand {
  /** The normalized reference (`docker.io/library/busybox:latest`). */
  reference: string;
  /** The registry the reference names, for ImagePullStarted. */
  registry: string;
  auth?: RegistryAuth;
  correlationId: string;
}

/** Pulls, with one download per reference in flight; resolves with the image id. */
export class ImagePulls {
  private readonly inflight = new Map<string, Promise<PullResult>>();

  constructor(private readonly deps: ImageServiceDeps) {}

  /** Resolves with what the pull wrote; a concurrent call for the same reference gets the same result. */
  pull(command: PullImageCommand): Promise<PullResult> {
    const running = this.inflight.get(command.reference);
    if (running) return running;
    const pull = this.run(command).finally(() => this.inflight.delete(command.reference));
    this.inflight.set(command.reference, pull);
    return pull;
  }

  /** References being pulled now. */
  get inFlight(): string[] {
    return [...this.inflight.keys()];
  }

  private async run(c: PullImageCommand): Promise<PullResult> {
    const { ledger, puller, clock } = this.deps;
    const failpoints = this.deps.failpoints ?? NO_FAILPOINTS;
    const stream = imageStream(c.reference);
    const started = clock();
    await ledger.append(stream, 'any', [
      {
        type: 'ImagePullStarted',
        correlationId: c.correlationId,
        data: { reference: c.reference, origin: c.registry },
      },
    ]);
    await failpoints.hit('PullImage.ImagePullStarted');
    // Progress events are written one after another, never blocking the download.
    let progress: Promise<unknown> = Promise.resolve();
    const onProgress = (p: PullProgress): void => {
      progress = progress
        .then(() =>
          ledger.append(stream, 'any', [{ type: 'ImagePullProgress', correlationId: c.correlationId, data: p }]),
        )
        .catch(() => undefined);
    };
    let result: PullResult;
    try {
      result = await puller.pull(c.reference, { ...(c.auth ? { auth: c.auth } : {}), onProgress });
      await failpoints.hit('PullImage.Pulled');
    } catch (error) {
      this.deps.images.invalidate();
      await progress;
      const code = (error as { code?: unknown }).code;
      await ledger.append(stream, 'any', [
        {
          type: 'ImagePullFailed',
          correlationId: c.correlationId,
          data: {
            reference: c.reference,
            reason: error instanceof Error ? error.message : String(error),
            ...(typeof code === 'string' ? { code } : {}),
            durationMs: round(clock() - started),
          },
        },
      ]);
      throw error;
    }
    await progress;
    this.deps.images.invalidate();
    await ledger.append(stream, 'any', [
      { type: 'ImagePulled', correlationId: c.correlationId, data: pulledData(result, round(clock() - started)) },
    ]);
    await failpoints.hit('PullImage.ImagePulled');
    return result;
  }
}

/** ImagePulled's data from a pull's (or an import's) result. */
export function pulledData(r: PullResult, durationMs: number) {
  return {
    reference: r.name,
    origin: r.origin,
    imageId: r.imageId,
    targetDigest: r.targetDigest,
    size: r.size,
    durationMs,
    layers: r.layers,
  };
}

/** RemoveImage: every name of the image the reference resolves to; an absent image is fine. Returns the names removed. */
export async function removeImage(
  deps: Pick<ImageServiceDeps, 'ledger' | 'images'>,
  o: { ref: string; correlationId: string },
): Promise<string[]> {
  const image = await deps.images.resolve(o.ref);
  if (!image) return [];
  const names = image.names.length > 0 ? image.names : [image.name];
  for (const [i, name] of names.entries()) {
    await deps.images.deleteRecord(name, { collect: i === names.length - 1 });
    await deps.ledger.append(imageStream(name), 'any', [
      { type: 'ImageRemoved', correlationId: o.correlationId, data: { reference: name, imageId: image.id } },
    ]);
  }
  return names;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
