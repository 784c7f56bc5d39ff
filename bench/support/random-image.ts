import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  composeImage,
  fileLayer,
  pushImage,
  type ComposedImage,
  type Layer,
} from '../../test/support/registry-images.js';
import type { TestRegistry } from '../../test/support/registry.js';

/*
 * An image whose layers are random bytes, so gzip cannot shrink them: the pull moves
 * about `layers * layerBytes` over HTTP, into the content store and through the unpack.
 * No busybox layer: the first random layer plays the base, so the image has exactly
 * `layers` layers.
 */

export const DEFAULT_RANDOM_LAYERS = 4;
export const DEFAULT_RANDOM_LAYER_BYTES = 25 * 1024 * 1024;

export interface PushedImage {
  /** `127.0.0.1:PORT/<repository>:<tag>`, what PullImage is asked for. */
  reference: string;
  image: ComposedImage;
  /** Every digest a pull writes into the content store: manifest, config, layers. */
  digests: string[];
  /** The compressed bytes of the layers (what the registry serves). */
  layerBytes: number;
}

/** Builds the random image and pushes it to `registry` as `<repository>:<tag>`. */
export async function pushRandomImage(
  registry: TestRegistry,
  options: { repository: string; tag: string; layers?: number; layerBytes?: number },
): Promise<PushedImage> {
  const count = options.layers ?? DEFAULT_RANDOM_LAYERS;
  const bytes = options.layerBytes ?? DEFAULT_RANDOM_LAYER_BYTES;
  const layers: Layer[] = [];
  for (let i = 0; i < count; i++) layers.push(await fileLayer({ [`data/layer-${i}.bin`]: randomBytes(bytes) }));
  const [base, ...extraLayers] = layers;
  const image = composeImage({ layer: base!, config: { config: { Cmd: ['/bin/true'] } } }, { extraLayers });
  await pushImage(registry, options.repository, image, options.tag);
  return {
    reference: `${registry.host}/${options.repository}:${options.tag}`,
    image,
    digests: [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)],
    layerBytes: image.layers.reduce((sum, l) => sum + l.size, 0),
  };
}

/**
 * Writes `<dir>/<host>/hosts.toml` sending pulls for `registry` to it over plain HTTP:
 * the certs.d layout both containerd's CRI (`registry.config_path`) and cri-ledger
 * (`--registry-config-path`) read.
 */
export async function writeHostsDir(dir: string, registry: TestRegistry): Promise<void> {
  await mkdir(join(dir, registry.host), { recursive: true });
  await writeFile(join(dir, registry.host, 'hosts.toml'), `server = ${JSON.stringify(registry.url)}\n`);
}
