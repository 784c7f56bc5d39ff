import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';
import type { Mount__Output } from '../cri/generated/runtime/v1/Mount.js';
import type { ImageVolumeDir } from './spec-input.js';

/** Where image volumes live under a container's root dir. */
export const IMAGE_VOLUMES_DIR = 'volumes';

/**
 * The directories to create for the image's VOLUMEs: one per volume under
 * `<containerRoot>/volumes/`, named by a digest of the container path so the same
 * container always gets the same directory (an undo after a crash finds it). A volume a
 * CRI mount already covers is skipped, and all of them when the operator ignores
 * image-defined volumes. A path with `..` is refused rather than cleaned: the image
 * cannot be trusted to mean something harmless by it.
 */
export function imageVolumeDirs(
  imageVolumes: readonly string[] | Readonly<Record<string, unknown>> | null | undefined,
  criMounts: readonly Pick<Mount__Output, 'containerPath'>[],
  containerRoot: string,
  ignoreImageDefinedVolumes: boolean,
): ImageVolumeDir[] {
  if (ignoreImageDefinedVolumes || !imageVolumes) return [];
  const paths = Array.isArray(imageVolumes) ? imageVolumes : Object.keys(imageVolumes);
  const clean = (p: string): string => posix.normalize(p).replace(/(.)\/+$/, '$1');
  const mounted = new Set(criMounts.map((m) => clean(m.containerPath)));
  const root = posix.normalize(containerRoot);
  const dirs: ImageVolumeDir[] = [];
  for (const raw of paths) {
    const field = `image.config.Volumes[${JSON.stringify(raw)}]`;
    if (raw.split('/').includes('..')) throw new InvalidArgumentError(field, 'a volume path must not contain ".."');
    if (!raw.startsWith('/')) throw new InvalidArgumentError(field, 'a volume path must be absolute');
    // oxlint-disable-next-line no-control-regex -- refusing control characters is the point
    if (/[\u0000-\u001f\u007f]/.test(raw))
      throw new InvalidArgumentError(field, 'a volume path must not contain control characters');
    const containerPath = clean(raw);
    if (mounted.has(containerPath) || dirs.some((d) => d.containerPath === containerPath)) continue;
    const id = createHash('sha256').update(containerPath).digest('hex');
    const hostPath = posix.join(root, IMAGE_VOLUMES_DIR, id);
    if (!hostPath.startsWith(`${root}/`)) throw new InvalidArgumentError(field, `escapes the container root ${root}`);
    dirs.push({ containerPath, hostPath });
  }
  return dirs;
}
