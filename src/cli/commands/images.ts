import { resolve } from 'node:path';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { imageServiceV1 } from '../../adapters/cri/cri-definition.js';
import { LedgerClient } from '../../adapters/ledger-api/ledger-client.js';
import { imagesServiceClass } from '../../adapters/ledger-api/ledger-definition.js';
import { fromServiceError } from '../../adapters/grpc/status.js';
import { imageStream } from '../../domain/ids.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from './support/output.js';

/*
 * `cri-ledger images ls|pull|import`: the running service's image store, over its
 * socket. `pull` is the CRI PullImage; on a terminal it draws a bar per layer from the
 * ImagePullProgress events it follows on the Ledger API. `import` asks the service to
 * read an archive from this node's disk (cri_ledger.v1.Images/Import).
 */

type Unary = (
  request: object,
  options: object,
  callback: (error: ServiceError | null, response: Record<string, unknown>) => void,
) => void;

/** One unary call on a grpc-js generic client; a failure comes back as a domain-shaped error. */
function call<T>(client: Client, method: string, request: object): Promise<T> {
  return new Promise((done, fail) =>
    (client as unknown as Record<string, Unary>)[method]!.call(client, request, {}, (error, response) =>
      error ? fail(fromServiceError(error, method)) : done(response as T),
    ),
  );
}

export function registerImages(program: Command): void {
  const images = program.command('images').description("the running service's images: list, pull, import");
  withConfigOptions(
    images
      .command('ls')
      .description('list the images (CRI ListImages)')
      .option('--json', 'print the CRI images as JSON'),
  ).action((options: { json?: boolean }, cmd: Command) => list(options, cmd));
  withConfigOptions(
    images
      .command('pull')
      .description('pull an image (CRI PullImage), with a bar per layer on a terminal')
      .argument('<ref>', 'image reference'),
  ).action((ref: string, _options: unknown, cmd: Command) => pull(ref, cmd));
  withConfigOptions(
    images
      .command('import')
      .description('import an OCI image-layout tar or a `docker save` tar from this node')
      .argument('<file>', 'the archive'),
  ).action((file: string, _options: unknown, cmd: Command) => importArchive(file, cmd));
}

async function withClient<T>(cmd: Command, fn: (client: Client, socket: string) => Promise<T>): Promise<T> {
  const socket = configFrom(cmd).socket;
  const Constructor = makeGenericClientConstructor(imageServiceV1, 'ImageService');
  const client = new Constructor(`unix://${socket}`, credentials.createInsecure());
  try {
    return await fn(client, socket);
  } finally {
    client.close();
  }
}

interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
}

async function list(options: { json?: boolean }, cmd: Command): Promise<void> {
  await withClient(cmd, async (client) => {
    const { images } = await call<{ images: CriImage[] }>(client, 'listImages', {});
    if (options.json) return print(JSON.stringify(images, null, 2));
    const rows = images.flatMap((i) =>
      (i.repoTags.length > 0 ? i.repoTags : ['<none>']).map((tag) => [
        tag,
        i.id.replace('sha256:', '').slice(0, 12),
        humanBytes(Number(i.size)),
      ]),
    );
    const widths = [0, 1, 2].map((c) => Math.max(['IMAGE', 'ID', 'SIZE'][c]!.length, ...rows.map((r) => r[c]!.length)));
    for (const row of [['IMAGE', 'ID', 'SIZE'], ...rows])
      print(
        row
          .map((v, c) => v.padEnd(widths[c]!))
          .join('  ')
          .trimEnd(),
      );
  });
}

async function pull(ref: string, cmd: Command): Promise<void> {
  await withClient(cmd, async (client, socket) => {
    const bars = process.stderr.isTTY ? await followProgress(socket, ref) : undefined;
    try {
      const { imageRef } = await call<{ imageRef: string }>(client, 'pullImage', { image: { image: ref } });
      bars?.stop();
      print(imageRef);
    } catch (error) {
      bars?.stop();
      throw error;
    }
  });
}

/** Bars per layer from the ImagePullProgress events of the image's stream, from now on. */
async function followProgress(socket: string, ref: string): Promise<{ stop(): void }> {
  const { normalizeImageRef } = await import('../../adapters/containerd/image-ref.js');
  const ledger = LedgerClient.connect(socket);
  const status = await ledger.status();
  const multi = new MultiBar(
    {
      stream: process.stderr,
      format: '{layer} [{bar}] {percentage}% {value}/{total} bytes',
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
    },
    Presets.shades_classic,
  );
  const layers = new Map<string, SingleBar>();
  const abort = new AbortController();
  const stream = imageStream(normalizeImageRef(ref));
  // Draws while the pull runs. The follow ends when stop() aborts it or the service goes
  // away; the pull reports its own errors, so the follow's are dropped.
  void (async () => {
    for await (const record of ledger.follow(
      { fromSeq: status.head + 1, streams: [stream], types: ['ImagePullProgress'] },
      abort.signal,
    )) {
      const { layer, done, total } = (
        JSON.parse(record.json) as { data: { layer: string; done: number; total: number } }
      ).data;
      let bar = layers.get(layer);
      if (!bar) layers.set(layer, (bar = multi.create(total, 0, { layer: layer.replace('sha256:', '').slice(0, 12) })));
      bar.update(done);
    }
  })().catch(() => undefined);
  return {
    stop() {
      abort.abort();
      multi.stop();
      ledger.close();
    },
  };
}

async function importArchive(file: string, cmd: Command): Promise<void> {
  const socket = configFrom(cmd).socket;
  const Images = imagesServiceClass();
  const client = new Images(`unix://${socket}`, credentials.createInsecure());
  try {
    const { images } = await call<{ images: Array<{ name: string; imageId: string; size: number }> }>(
      client,
      'import',
      { path: resolve(file) },
    );
    for (const image of images) print(`${image.name}  ${image.imageId}  ${humanBytes(image.size)}`);
  } finally {
    client.close();
  }
}

function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)}${units[unit]}`;
}
