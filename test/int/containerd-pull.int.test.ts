import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, rmdir, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { mountArgs, readFromImageView } from '../../src/adapters/containerd/containerd-image-view.js';
import { ContainerdImageStore } from '../../src/adapters/containerd/containerd-images.js';
import {
  BlobMismatchError,
  ContainerdPuller,
  LayerDiffIdMismatchError,
  pullImage,
  PULL_PREFIX,
  type PullProgress,
} from '../../src/adapters/containerd/containerd-pull.js';
import { MEDIA_TYPES } from '../../src/adapters/containerd/image-manifest.js';
import { importArchive, openImageArchive } from '../../src/adapters/images/archive-source.js';
import type { Descriptor, ImageSource } from '../../src/adapters/images/image-source.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from '../support/containerd.js';
import { buildLayeredTestImage, type BuiltLayeredImage } from '../support/oci-image.js';
import { busyboxBase, composeImage, type ComposedImage } from '../support/registry-images.js';

const run = promisify(execFile);
const SNAPSHOTTER = 'overlayfs';
const REF = 'docker.io/library/layered:v1';

let containerd: PrivateContainerd;
let dir: string;
let image: BuiltLayeredImage;
const apis: ContainerdApi[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cri-ledger-pull-'));
  // Layer 0: busybox, gzip; layer 1: two small files, uncompressed.
  image = await buildLayeredTestImage(
    REF,
    'layered:v1',
    [
      { busybox: true, files: { '/layer0.txt': 'from layer 0\n' }, gzip: true },
      { files: { '/layer1.txt': 'from layer 1\n', '/etc/motd': 'layered\n' }, gzip: false },
    ],
    dir,
  );
  containerd = await startContainerd();
});

after(async () => {
  for (const api of apis) api.close();
  await rm(dir, { recursive: true, force: true });
  if (!containerd) return;
  const root = dirname(containerd.address);
  await containerd.stop();
  assert.equal(existsSync(root), false);
});

let namespaces = 0;
/** Each test works in a namespace of its own, so counts of content and snapshots are its own. */
function freshApi(): ContainerdApi {
  const api = connectContainerd({ address: containerd.address, namespace: `pull-test-${++namespaces}` });
  apis.push(api);
  return api;
}

async function ociSource(): Promise<ImageSource> {
  const archive = await openImageArchive(image.ociFile);
  assert.equal(archive.format, 'oci-layout');
  assert.deepEqual(
    archive.images.map((s) => s.reference),
    [REF],
  );
  return archive.images[0]!;
}

/** Wraps a source and counts what is read from it. */
class CountingSource implements ImageSource {
  blobCalls = 0;
  resolveCalls = 0;
  constructor(private readonly inner: ImageSource) {}
  get reference(): string {
    return this.inner.reference;
  }
  get origin(): string {
    return this.inner.origin;
  }
  resolve(): ReturnType<ImageSource['resolve']> {
    this.resolveCalls++;
    return this.inner.resolve();
  }
  fetch(d: Descriptor): Promise<Buffer> {
    return this.inner.fetch(d);
  }
  blob(d: Descriptor): Promise<Readable> {
    this.blobCalls++;
    return this.inner.blob(d);
  }
}

/** A source whose blob `digest` reads as `bytes` (or half the real bytes, then an error). */
function brokenSource(inner: ImageSource, digest: string, how: 'stream-error' | 'wrong-bytes'): ImageSource {
  const source = new CountingSource(inner);
  source.blob = async (d) => {
    if (d.digest !== digest) return inner.blob(d);
    const real = Buffer.concat(await (await inner.blob(d)).toArray());
    if (how === 'wrong-bytes') {
      real[real.length - 1] = real[real.length - 1]! ^ 0xff;
      return Readable.from([real]);
    }
    return Readable.from(
      (async function* () {
        yield real.subarray(0, Math.floor(real.length / 2));
        throw new Error('blob stream broke (test)');
      })(),
    );
  };
  return source;
}

async function contentDigests(api: ContainerdApi): Promise<string[]> {
  const pages = await collectStream<{ info: Array<{ digest: string }> }>(api.content, 'List', { filters: [] });
  return pages.flatMap((p) => p.info.map((i) => i.digest)).sort();
}

async function contentLabels(api: ContainerdApi, digest: string): Promise<Record<string, string>> {
  return (await unaryCall<{ info: { labels: Record<string, string> } }>(api.content, 'Info', { digest })).info.labels;
}

async function snapshots(api: ContainerdApi): Promise<Array<{ name: string; parent: string; kind: string }>> {
  const pages = await collectStream<{ info: Array<{ name: string; parent: string; kind: string }> }>(
    api.snapshots,
    'List',
    { snapshotter: SNAPSHOTTER, filters: [] },
  );
  return pages.flatMap((p) => p.info).sort((a, b) => a.name.localeCompare(b.name));
}

async function leases(api: ContainerdApi): Promise<string[]> {
  return (await unaryCall<{ leases: Array<{ id: string }> }>(api.leases, 'List', { filters: [] })).leases.map(
    (l) => l.id,
  );
}

async function ingests(api: ContainerdApi): Promise<string[]> {
  return (
    await unaryCall<{ statuses: Array<{ ref: string }> }>(api.content, 'ListStatuses', { filters: [] })
  ).statuses.map((s) => s.ref);
}

/** A full GC cycle: deleting a lease with sync waits for the collection it triggers. */
async function collectGarbage(api: ContainerdApi): Promise<void> {
  await unaryCall(api.leases, 'Create', { id: 'gc-now', labels: {} });
  await unaryCall(api.leases, 'Delete', { id: 'gc-now', sync: true });
}

async function imageTarget(api: ContainerdApi, name: string): Promise<{ media_type: string; digest: string }> {
  const { target } = (
    await unaryCall<{ image: { target: { media_type: string; digest: string } } }>(api.images, 'Get', { name })
  ).image;
  return { media_type: target.media_type, digest: target.digest };
}

/** What the content store keeps of a pulled image: its documents. The layers live on as snapshots only. */
function imageDigests(): string[] {
  return [image.manifestDigest, image.configDigest].sort();
}

describe('pullImage from an OCI archive', () => {
  it('unpacks the layers into the chain, stores the documents and records the image; GC keeps it all once the lease is gone', async () => {
    const api = freshApi();
    const pulled = await pullImage(api, await ociSource());
    assert.equal(pulled.name, REF);
    assert.equal(pulled.id, image.configDigest);
    assert.equal(pulled.manifestDigest, image.manifestDigest);
    assert.equal(pulled.targetDigest, image.manifestDigest);
    assert.equal(pulled.chainId, image.chainIds.at(-1));
    assert.equal(pulled.size, image.layers[0]!.size + image.layers[1]!.size);
    assert.deepEqual(
      pulled.layers.map((l) => [l.digest, l.skipped]),
      image.layers.map((l) => [l.digest, false]),
    );

    const { images } = await unaryCall<{
      images: Array<{ name: string; target: { media_type: string; digest: string } }>;
    }>(api.images, 'List', { filters: [] });
    assert.deepEqual(
      images.map((i) => [i.name, i.target.media_type, i.target.digest]),
      [[REF, MEDIA_TYPES.ociManifest, image.manifestDigest]],
    );
    assert.deepEqual(await leases(api), []);
    assert.deepEqual(await ingests(api), []);

    // Only the GC labels hold the content and snapshots now.
    await collectGarbage(api);
    assert.deepEqual(await contentDigests(api), imageDigests());
    const manifestLabels = await contentLabels(api, image.manifestDigest);
    assert.equal(manifestLabels['containerd.io/gc.ref.content.config'], image.configDigest);
    assert.equal(manifestLabels['containerd.io/gc.ref.content.l.0'], image.layers[0]!.digest);
    assert.equal(manifestLabels['containerd.io/gc.ref.content.l.1'], image.layers[1]!.digest);
    assert.equal(
      (await contentLabels(api, image.configDigest))['containerd.io/gc.ref.snapshot.overlayfs'],
      image.chainIds[1],
    );
    assert.deepEqual(
      (await snapshots(api)).map((s) => [s.name, s.parent, s.kind]),
      [
        [image.chainIds[0], '', 'COMMITTED'],
        [image.chainIds[1], image.chainIds[0], 'COMMITTED'],
      ].sort((a, b) => a[0]!.localeCompare(b[0]!)),
    );
  });

  it('gives a container snapshot prepared from the chain id the files of every layer', async () => {
    const api = freshApi();
    const pulled = await pullImage(api, await ociSource());
    const key = 'container-1';
    await unaryCall(api.leases, 'Create', { id: key, labels: {} });
    const { mounts } = await unaryCall<{
      mounts: Array<{ type: string; source: string; target: string; options: string[] }>;
    }>(api.snapshots, 'Prepare', { snapshotter: SNAPSHOTTER, key, parent: pulled.chainId, labels: {} }, { lease: key });
    assert.equal(mounts.length, 1);
    const mountPoint = await mkdtemp(join(tmpdir(), 'cri-ledger-pull-mount-'));
    try {
      await run('mount', mountArgs(mounts[0]!, mountPoint));
      try {
        assert.equal(await readFile(join(mountPoint, 'layer0.txt'), 'utf8'), 'from layer 0\n');
        assert.equal(await readFile(join(mountPoint, 'layer1.txt'), 'utf8'), 'from layer 1\n');
        assert.ok(existsSync(join(mountPoint, 'bin', 'busybox')));
      } finally {
        await run('umount', [mountPoint]);
      }
    } finally {
      await rmdir(mountPoint);
      await unaryCall(api.snapshots, 'Remove', { snapshotter: SNAPSHOTTER, key });
      await unaryCall(api.leases, 'Delete', { id: key });
    }
    assert.deepEqual(mountsUnder(mountPoint), []);
  });

  it('applies whiteouts: a file deleted and a directory made opaque by an upper layer are gone from the chain', async () => {
    const api = freshApi();
    const whited = await buildLayeredTestImage(
      'docker.io/library/whiteouts:v1',
      'whiteouts:v1',
      [
        { busybox: true, files: { '/layer0.txt': 'from layer 0\n', '/etc/kept': 'kept\n' }, gzip: true },
        { files: { '/etc/motd': 'layer 1\n' }, gzip: true },
        { files: { '/.wh.layer0.txt': '', '/etc/.wh..wh..opq': '', '/etc/fresh': 'layer 2\n' }, gzip: true },
      ],
      join(dir, 'whiteouts'),
    );
    const archive = await openImageArchive(whited.ociFile);
    const pulled = await pullImage(api, archive.images[0]!);
    assert.equal(pulled.chainId, whited.chainIds.at(-1));
    const files = await readFromImageView(api, SNAPSHOTTER, pulled.chainId, [
      '/layer0.txt',
      '/etc/kept',
      '/etc/motd',
      '/etc/fresh',
      '/bin/busybox',
    ]);
    assert.equal(files.get('/layer0.txt'), undefined);
    assert.equal(files.get('/etc/kept'), undefined);
    assert.equal(files.get('/etc/motd'), undefined);
    assert.equal(files.get('/etc/fresh'), 'layer 2\n');
    assert.ok(files.get('/bin/busybox')!.length > 100_000);
    // One layer below, the chain still has what the top layer hides.
    const below = await readFromImageView(api, SNAPSHOTTER, whited.chainIds[1]!, ['/layer0.txt', '/etc/motd']);
    assert.deepEqual([...below.values()], ['from layer 0\n', 'layer 1\n']);
  });

  it('skips every layer on a second pull and writes no new content', async () => {
    const api = freshApi();
    await pullImage(api, await ociSource());
    const content = await contentDigests(api);
    const snaps = await snapshots(api);
    const source = new CountingSource(await ociSource());
    const again = await pullImage(api, source);
    assert.deepEqual(
      again.layers.map((l) => l.skipped),
      [true, true],
    );
    assert.equal(source.blobCalls, 0);
    assert.deepEqual(await contentDigests(api), content);
    assert.deepEqual(await snapshots(api), snaps);
    assert.deepEqual(await leases(api), []);
  });

  it('runs 8 concurrent pulls of one reference as one pull', async () => {
    const api = freshApi();
    const puller = new ContainerdPuller(api);
    const source = new CountingSource(await ociSource());
    const results = await Promise.all(Array.from({ length: 8 }, () => puller.pull(source)));
    assert.equal(source.resolveCalls, 1);
    assert.equal(source.blobCalls, image.layers.length);
    for (const result of results) assert.deepEqual(result, results[0]);
    assert.deepEqual(await contentDigests(api), imageDigests());
    // Once it is done, a new pull is a new pull (and finds everything there).
    const later = await puller.pull(source);
    assert.equal(source.resolveCalls, 2);
    assert.deepEqual(
      later.layers.map((l) => l.skipped),
      [true, true],
    );
  });

  it('reports progress per layer, never past the total, ending at the total', async () => {
    const api = freshApi();
    const events: PullProgress[] = [];
    await pullImage(api, await ociSource(), { onProgress: (p) => events.push(p), progressIntervalMs: 0 });
    for (const layer of image.layers) {
      const mine = events.filter((e) => e.layer === layer.digest);
      assert.ok(mine.length >= 2, `${layer.digest}: ${mine.length} events`);
      for (const [i, e] of mine.entries()) {
        assert.equal(e.total, layer.size);
        assert.ok(e.done <= e.total);
        if (i > 0) assert.ok(e.done >= mine[i - 1]!.done);
      }
      assert.equal(mine.at(-1)!.done, layer.size);
    }
    assert.deepEqual(new Set(events.map((e) => e.layer)), new Set(image.layers.map((l) => l.digest)));
  });
});

describe('pullImage the classic way (streamUnpack: false)', () => {
  it("writes the layer blobs into the content store and unpacks them with containerd's Diff.Apply", async () => {
    const api = freshApi();
    const pulled = await pullImage(api, await ociSource(), { streamUnpack: false });
    assert.equal(pulled.chainId, image.chainIds.at(-1));
    await collectGarbage(api);
    assert.deepEqual(
      await contentDigests(api),
      [image.manifestDigest, image.configDigest, ...image.layers.map((l) => l.digest)].sort(),
    );
    assert.equal(
      (await contentLabels(api, image.layers[0]!.digest))['containerd.io/uncompressed'],
      image.layers[0]!.diffId,
    );
    assert.equal((await contentLabels(api, image.layers[1]!.digest))['containerd.io/uncompressed'], undefined);
    const files = await readFromImageView(api, SNAPSHOTTER, pulled.chainId, ['/layer0.txt', '/layer1.txt']);
    assert.deepEqual([...files.values()], ['from layer 0\n', 'from layer 1\n']);
  });

  it("is refused by containerd's commit when the bytes do not match the digest, and leaves nothing", async () => {
    const api = freshApi();
    const source = brokenSource(await ociSource(), image.layers[1]!.digest, 'wrong-bytes');
    await assert.rejects(pullImage(api, source, { streamUnpack: false }), BlobMismatchError);
    assert.deepEqual(
      (await leases(api)).filter((l) => l.startsWith(PULL_PREFIX)),
      [],
    );
    await collectGarbage(api);
    assert.deepEqual(await contentDigests(api), []);
    assert.deepEqual(await snapshots(api), []);
  });
});

/** An ImageSource over a composed image held in memory. */
function memorySource(reference: string, composed: ComposedImage): CountingSource {
  const blobs = new Map([composed.manifest, composed.config, ...composed.layers].map((b) => [b.digest, b.data]));
  const inner: ImageSource = {
    reference,
    origin: 'memory:',
    resolve: async () => ({
      descriptor: {
        mediaType: composed.manifest.mediaType,
        digest: composed.manifest.digest,
        size: composed.manifest.size,
      },
      bytes: composed.manifest.data,
    }),
    fetch: async (d) => blobs.get(d.digest)!,
    blob: async (d) => Readable.from([blobs.get(d.digest)!]),
  };
  return new CountingSource(inner);
}

describe('a layer the extractor leaves to containerd', () => {
  it('goes the classic way: its blob is read again, written to the content store and applied by Diff.Apply', async () => {
    const api = freshApi();
    // A GNU sparse file (PAX format 1.0): containerd's Go tar reader extracts it, this one does not.
    const staged = join(dir, 'sparse');
    await mkdir(staged);
    await writeFile(join(staged, 'plain.txt'), 'plain\n');
    await writeFile(join(staged, 'sparse.bin'), '');
    await truncate(join(staged, 'sparse.bin'), 1024 * 1024);
    await appendFile(join(staged, 'sparse.bin'), 'end');
    await run('tar', ['--sparse', '--format=posix', '-C', staged, '-cf', join(dir, 'sparse.tar'), '.']);
    const tar = await readFile(join(dir, 'sparse.tar'));
    const layer = { gzip: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
    const composed = composeImage(await busyboxBase(), { extraLayers: [layer] });
    const source = memorySource('docker.io/library/sparse:v1', composed);
    const pulled = await pullImage(api, source);
    // Layer 0 once; layer 1 once streamed (given up at the sparse entry), once the classic way.
    assert.equal(source.blobCalls, 3);
    const files = await readFromImageView(api, SNAPSHOTTER, pulled.chainId, ['/plain.txt', '/sparse.bin']);
    assert.equal(files.get('/plain.txt'), 'plain\n');
    assert.equal(files.get('/sparse.bin')?.length, 1024 * 1024 + 3);
    await collectGarbage(api);
    assert.deepEqual(
      await contentDigests(api),
      [composed.manifest.digest, composed.config.digest, composed.layers[1]!.digest].sort(),
    );
    assert.deepEqual(
      (await snapshots(api)).map((s) => s.kind),
      ['COMMITTED', 'COMMITTED'],
    );
  });
});

describe('a pull that fails', () => {
  for (const how of ['stream-error', 'wrong-bytes'] as const) {
    it(`leaves no lease, and GC leaves none of its content or snapshots (${how})`, async () => {
      const api = freshApi();
      const events: PullProgress[] = [];
      const source = brokenSource(await ociSource(), image.layers[1]!.digest, how);
      // One layer at a time: layer 0 is written and committed before layer 1 breaks.
      const pull = pullImage(api, source, { concurrency: 1, onProgress: (p) => events.push(p), progressIntervalMs: 0 });
      // Layer 1 is an uncompressed tar: bytes that break the source's promise to verify them unpack to another diff id.
      if (how === 'wrong-bytes') await assert.rejects(pull, LayerDiffIdMismatchError);
      else await assert.rejects(pull, /blob stream broke \(test\)/);
      assert.ok(
        events.some((e) => e.layer === image.layers[0]!.digest && e.done === e.total),
        'layer 0 was written before the failure',
      );

      assert.deepEqual(
        (await leases(api)).filter((l) => l.startsWith(PULL_PREFIX)),
        [],
      );
      assert.deepEqual(await ingests(api), []);
      await collectGarbage(api);
      assert.deepEqual(await contentDigests(api), []);
      assert.deepEqual(await snapshots(api), []);
      assert.deepEqual((await unaryCall<{ images: unknown[] }>(api.images, 'List', { filters: [] })).images, []);
    });
  }
});

describe('importArchive', () => {
  it('imports a docker save tar under its RepoTags, with a docker schema 2 manifest', async () => {
    const api = freshApi();
    const [pulled, ...rest] = await importArchive(api, image.dockerFile);
    assert.equal(rest.length, 0);
    assert.equal(pulled!.name, REF);
    assert.equal(pulled!.id, image.configDigest);
    assert.equal(pulled!.chainId, image.chainIds.at(-1));
    assert.notEqual(pulled!.manifestDigest, image.manifestDigest);
    assert.equal(pulled!.targetDigest, pulled!.manifestDigest);
    assert.deepEqual(await imageTarget(api, REF), {
      media_type: MEDIA_TYPES.dockerManifest,
      digest: pulled!.manifestDigest,
    });
    const resolved = await new ContainerdImageStore({ api }).resolve('layered:v1');
    assert.equal(resolved?.id, image.configDigest);
    assert.equal(resolved?.chainId, image.chainIds.at(-1));
    const files = await readFromImageView(api, SNAPSHOTTER, pulled!.chainId, ['/layer0.txt', '/layer1.txt']);
    assert.deepEqual([...files.values()], ['from layer 0\n', 'from layer 1\n']);
    await collectGarbage(api);
    assert.deepEqual(await contentDigests(api), [pulled!.manifestDigest, image.configDigest].sort());
  });

  it('re-tags: a name pulled from one archive and imported from another points at the new target', async () => {
    const api = freshApi();
    await importArchive(api, image.ociFile);
    assert.equal((await imageTarget(api, REF)).digest, image.manifestDigest);
    const [pulled] = await importArchive(api, image.dockerFile);
    assert.deepEqual(
      pulled!.layers.map((l) => l.skipped),
      [true, true],
    );
    assert.deepEqual(await imageTarget(api, REF), {
      media_type: MEDIA_TYPES.dockerManifest,
      digest: pulled!.manifestDigest,
    });
  });
});
