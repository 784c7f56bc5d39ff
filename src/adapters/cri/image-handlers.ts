import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { removeImage, type ImagePulls } from '../../commands/image-service.js';
import type { Ledger } from '../../commands/ledger.js';
import type { ImageCatalog, ImageFsUsageSource, RegistryAuth, ResolvedImage } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';
import { pullTarget } from '../../domain/image-ref.js';
import { correlationIdOf } from '../grpc/correlation.js';
import { unary } from './runtime-info.js';

/*
 * The CRI ImageService: PullImage and RemoveImage record events (src/commands/
 * image-service.ts); ImageStatus, ListImages and ImageFsInfo read containerd's image
 * records, so an image imported by other means is seen too.
 */

export interface ImageHandlerDeps {
  ledger: Ledger;
  images: ImageCatalog;
  pulls: ImagePulls;
  imageFs: ImageFsUsageSource;
  /** The sandbox image, normalized: reported pinned, as containerd's CRI pins it. */
  sandboxImage: string;
}

interface ImageSpecMessage {
  image: string;
}

function imageRefOf(spec: ImageSpecMessage | null, field: string): string {
  const ref = spec?.image?.trim() ?? '';
  if (ref.length === 0) throw new InvalidArgumentError(field, 'must name an image');
  return ref;
}

/** The CRI Image message: the user as a uid when numeric (`1000` or `1000:1000`), else as a name. `sandboxImage` is normalized. */
export function imageMessage(image: ResolvedImage, sandboxImage: string) {
  const user = (image.config.user ?? '').split(':')[0] ?? '';
  const pinned = image.names.includes(sandboxImage) || image.name === sandboxImage;
  return {
    id: image.id,
    repoTags: image.repoTags,
    repoDigests: image.repoDigests,
    size: image.size,
    ...(/^\d+$/.test(user) ? { uid: { value: user } } : { username: user }),
    spec: { image: image.id, annotations: {} },
    pinned,
  };
}

export function imageHandlers(deps: ImageHandlerDeps): UntypedServiceImplementation {
  return {
    PullImage: unary<{ image: ImageSpecMessage | null; auth: RegistryAuth | null }, object>(async (request, call) => {
      const ref = imageRefOf(request.image, 'image.image');
      let target;
      try {
        target = pullTarget(ref);
      } catch (cause) {
        throw new InvalidArgumentError(
          'image.image',
          `"${ref}" is not an image reference: ${(cause as Error).message}`,
          { cause },
        );
      }
      const result = await deps.pulls.pull({
        ...target,
        ...(request.auth ? { auth: request.auth } : {}),
        correlationId: correlationIdOf(call),
      });
      return { imageRef: result.imageId };
    }),
    ImageStatus: unary<{ image: ImageSpecMessage | null; verbose: boolean }, object>(async (request) => {
      const image = await deps.images.resolve(imageRefOf(request.image, 'image.image'));
      // An absent image is not an error: kubelet asks before it pulls.
      if (!image) return { image: null, info: {} };
      return {
        image: imageMessage(image, deps.sandboxImage),
        info: request.verbose
          ? { info: JSON.stringify({ id: image.id, chainId: image.chainId, config: image.config }) }
          : {},
      };
    }),
    ListImages: unary<{ filter: { image: ImageSpecMessage | null } | null }, object>(async (request) => {
      const wanted = request.filter?.image?.image?.trim();
      if (wanted) {
        const image = await deps.images.resolve(wanted);
        return { images: image ? [imageMessage(image, deps.sandboxImage)] : [] };
      }
      return { images: (await deps.images.list()).map((i) => imageMessage(i, deps.sandboxImage)) };
    }),
    RemoveImage: unary<{ image: ImageSpecMessage | null }, object>(async (request, call) => {
      await removeImage(
        { ledger: deps.ledger, images: deps.images },
        { ref: imageRefOf(request.image, 'image.image'), correlationId: correlationIdOf(call) },
      );
      return {};
    }),
    ImageFsInfo: unary<unknown, object>(async () => {
      const u = await deps.imageFs.usage();
      return {
        imageFilesystems: [
          {
            timestamp: u.timestampNs,
            fsId: { mountpoint: u.mountpoint },
            usedBytes: { value: u.usedBytes },
            inodesUsed: { value: u.inodesUsed },
          },
        ],
        containerFilesystems: [],
      };
    }),
  };
}
