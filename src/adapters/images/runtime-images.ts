import { isAbsolute } from 'node:path';
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import { pulledData } from '../../commands/image-service.js';
import type { Ledger } from '../../commands/ledger.js';
import type { ImagePuller, PullProgress, PullResult, RegistryAuth } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { imageStream } from '../../domain/ids.js';
import type { ContainerdPuller, PulledImage } from '../containerd/containerd-pull.js';
import { correlationIdOf } from '../grpc/correlation.js';
import { unary } from '../cri/runtime-info.js';
import { openImageArchive } from './archive-source.js';
import type { ImageSource } from './image-source.js';

/** A pull's result in the command's terms, with where the content came from. */
export function pullResultOf(pulled: PulledImage, origin: string): PullResult {
  return {
    name: pulled.name,
    origin,
    imageId: pulled.id,
    targetDigest: pulled.targetDigest,
    size: pulled.size,
    layers: pulled.layers,
  };
}

/**
 * ImagePuller on containerd: the source for a reference (a registry, through the hosts
 * config and the caller's credentials) written into containerd by ContainerdPuller.
 */
export class RuntimeImagePuller implements ImagePuller {
  constructor(
    private readonly o: {
      puller: ContainerdPuller;
      sourceFor: (reference: string, auth: RegistryAuth | undefined) => Promise<ImageSource>;
    },
  ) {}

  async pull(
    reference: string,
    o: { auth?: RegistryAuth; onProgress: (p: PullProgress) => void },
  ): Promise<PullResult> {
    const source = await this.o.sourceFor(reference, o.auth);
    return pullResultOf(await this.o.puller.pull(source, { onProgress: o.onProgress }), source.origin);
  }
}

/**
 * `cri_ledger.v1.Images`: Import reads an OCI image-layout tar or a `docker save` tar
 * from the node's disk and records each image it writes as ImagePulled (origin
 * `oci-archive:<path>` or `docker-archive:<path>`), as if it had been pulled.
 */
export function imagesAdminHandlers(deps: {
  ledger: Ledger;
  puller: ContainerdPuller;
  images: { invalidate(): void };
}): UntypedServiceImplementation {
  return {
    Import: unary<{ path: string }, object>(async (request, call) => {
      if (!isAbsolute(request.path))
        throw new InvalidArgumentError('path', `"${request.path}" must be an absolute path on the node`);
      const correlationId = correlationIdOf(call as { metadata: Metadata });
      const archive = await openImageArchive(request.path);
      const images = [];
      for (const source of archive.images) {
        const started = performance.now();
        const pulled = await deps.puller.pull(source, {}).finally(() => deps.images.invalidate());
        const result = pullResultOf(pulled, source.origin);
        await deps.ledger.append(imageStream(result.name), 'any', [
          {
            type: 'ImagePulled',
            correlationId,
            data: pulledData(result, Math.round((performance.now() - started) * 1000) / 1000),
          },
        ]);
        images.push({ name: result.name, imageId: result.imageId, size: result.size });
      }
      return { images };
    }),
  };
}
