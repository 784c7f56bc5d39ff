import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES, parseImageConfig } from '../../src/adapters/containerd/image-manifest.js';
import {
  ContentVerificationError,
  RegistryNotFoundError,
  RegistryUnauthenticatedError,
  RegistryUnavailableError,
} from '../../src/adapters/registry/registry-errors.js';
import { registrySource, type RegistrySourceOptions } from '../../src/adapters/registry/registry-source.js';
import {
  busyboxBase,
  composeImage,
  composeIndex,
  fileLayer,
  otherPlatform,
  pushImage,
  pushIndex,
  type BaseImage,
  type ComposedImage,
} from '../support/registry-images.js';
import {
  REGISTRY_IDENTITY_TOKEN,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  startRegistry,
  type TestRegistry,
} from '../support/registry.js';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A certs.d dir: registry -> hosts.toml text. */
async function hostsDir(dirs: string[], files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cri-ledger-certs.d-'));
  dirs.push(dir);
  for (const [registry, text] of Object.entries(files)) {
    await mkdir(join(dir, registry));
    await writeFile(join(dir, registry, 'hosts.toml'), text);
  }
  return dir;
}

/** Options that reach `registry` over plain HTTP, as a hosts.toml `server` line says. */
async function plainHttp(
  dirs: string[],
  registry: TestRegistry,
  extra: RegistrySourceOptions = {},
): Promise<RegistrySourceOptions> {
  return { hostsDir: await hostsDir(dirs, { [registry.host]: `server = "${registry.url}"\n` }), ...extra };
}

/** Resolves `ref` to its platform manifest and reads config and every layer, checking each against `image`. */
async function pullAndCheck(ref: string, options: RegistrySourceOptions, image: ComposedImage): Promise<void> {
  const source = await registrySource(ref, options);
  const manifest = await source.platformManifest();
  assert.equal(manifest.descriptor.digest, image.manifest.digest);
  assert.deepEqual(await source.fetch(manifest.config), image.config.data);
  assert.deepEqual(
    manifest.layers.map((l) => l.digest),
    image.layers.map((l) => l.digest),
  );
  for (const [i, layer] of manifest.layers.entries())
    assert.deepEqual(await readAll(await source.blob(layer)), image.layers[i]!.data);
}

let base: BaseImage;
let multi: ComposedImage;
const dirs: string[] = [];

before(async () => {
  base = await busyboxBase();
  multi = composeImage(base, { extraLayers: [await fileLayer({ 'etc/extra.txt': 'a second layer\n' })] });
});

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('registry client, no auth', () => {
  let registry: TestRegistry;
  let hostImage: ComposedImage;
  let otherImage: ComposedImage;
  let userImage: ComposedImage;

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'test/multi', multi, 'v1');
    // The other platform first, so picking the first entry would pick wrong.
    otherImage = composeImage(base, { format: 'docker', platform: otherPlatform() });
    hostImage = composeImage(base, { format: 'docker' });
    await pushIndex(registry, 'test/list', composeIndex([otherImage, hostImage], 'docker'), 'v1');
    await pushIndex(
      registry,
      'test/index',
      composeIndex([composeImage(base, { platform: otherPlatform() }), multi], 'oci'),
      'v1',
    );
    userImage = composeImage(base, { format: 'docker', user: 'app' });
    await pushImage(registry, 'test/user', userImage, 'v1');
  });
  after(() => registry.stop());

  it('resolves a tag and reads a multi-layer image, every blob verified', async () => {
    const source = await registrySource(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry));
    const top = await source.resolve();
    assert.equal(top.descriptor.digest, multi.manifest.digest);
    assert.equal(top.descriptor.mediaType, MEDIA_TYPES.ociManifest);
    assert.deepEqual(top.bytes, multi.manifest.data);
    assert.equal(source.origin, registry.url);
    await pullAndCheck(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry), multi);
  });

  it('resolves by digest', async () => {
    const source = await registrySource(
      `${registry.host}/test/multi@${multi.manifest.digest}`,
      await plainHttp(dirs, registry),
    );
    assert.equal(source.reference, `${registry.host}/test/multi@${multi.manifest.digest}`);
    assert.equal((await source.resolve()).descriptor.digest, multi.manifest.digest);
  });

  it('resolves name:tag@digest by the digest, even when the tag does not exist', async () => {
    const source = await registrySource(
      `${registry.host}/test/multi:no-such-tag@${multi.manifest.digest}`,
      await plainHttp(dirs, registry),
    );
    assert.equal((await source.resolve()).descriptor.digest, multi.manifest.digest);
  });

  it('picks the host platform from a Docker manifest list, and another platform when asked', async () => {
    const ref = `${registry.host}/test/list:v1`;
    const source = await registrySource(ref, await plainHttp(dirs, registry));
    assert.equal((await source.resolve()).descriptor.mediaType, MEDIA_TYPES.dockerManifestList);
    await pullAndCheck(ref, await plainHttp(dirs, registry), hostImage);
    const other = await registrySource(ref, await plainHttp(dirs, registry, { platform: otherPlatform() }));
    assert.equal((await other.platformManifest()).descriptor.digest, otherImage.manifest.digest);
  });

  it('picks the host platform from an OCI index', async () => {
    const source = await registrySource(`${registry.host}/test/index:v1`, await plainHttp(dirs, registry));
    assert.equal((await source.resolve()).descriptor.mediaType, MEDIA_TYPES.ociIndex);
    await pullAndCheck(`${registry.host}/test/index:v1`, await plainHttp(dirs, registry), multi);
  });

  it('reads a Docker schema 2 image whose config sets a user', async () => {
    const source = await registrySource(`${registry.host}/test/user:v1`, await plainHttp(dirs, registry));
    const manifest = await source.platformManifest();
    assert.equal(manifest.descriptor.mediaType, MEDIA_TYPES.dockerManifest);
    assert.equal(parseImageConfig(await source.fetch(manifest.config)).config.user, 'app');
  });

  it('serves docker.io/library/busybox from a hosts.toml mirror', async () => {
    const image = composeImage(base);
    await pushImage(registry, 'library/busybox', image, 'latest');
    const toml = [
      'server = "https://registry-1.docker.io"',
      '',
      `[host."${registry.url}"]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n');
    const options = { hostsDir: await hostsDir(dirs, { 'docker.io': toml }) };
    const source = await registrySource('busybox', options);
    assert.equal(source.reference, 'docker.io/library/busybox:latest');
    assert.equal((await source.resolve()).descriptor.digest, image.manifest.digest);
    assert.equal(source.origin, registry.url);
    await pullAndCheck('docker.io/library/busybox:latest', options, image);
  });

  it('reports a missing tag or repository as not found, naming the reference, registry and URL', async () => {
    const missingTag = await registrySource(`${registry.host}/test/multi:missing`, await plainHttp(dirs, registry));
    await assert.rejects(missingTag.resolve(), (error: Error) => {
      assert.ok(error instanceof RegistryNotFoundError, String(error));
      assert.match(error.message, new RegExp(`${registry.host}/test/multi:missing`));
      assert.match(error.message, new RegExp(`registry ${registry.host}`));
      assert.match(
        error.message,
        new RegExp(`${registry.url}/v2/test/multi/manifests/missing \\(404 MANIFEST_UNKNOWN`),
      );
      return true;
    });
    const missingRepo = await registrySource(`${registry.host}/test/nothing-here:v1`, await plainHttp(dirs, registry));
    await assert.rejects(missingRepo.resolve(), RegistryNotFoundError);
  });

  it('errors the blob stream when the stored bytes were tampered with', async () => {
    const layer = await fileLayer({ 'data/payload': 'payload '.repeat(4096) });
    const image = composeImage(base, { extraLayers: [layer] });
    await pushImage(registry, 'test/corrupt', image, 'v1');
    const target = image.layers[1]!;
    const file = registry.blobFile(target.digest);
    const bytes = await readFile(file);
    const middle = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
    await writeFile(file, bytes);
    const source = await registrySource(`${registry.host}/test/corrupt:v1`, await plainHttp(dirs, registry));
    await assert.rejects(readAll(await source.blob(target)), (error: Error) => {
      assert.ok(error instanceof ContentVerificationError, String(error));
      assert.match(error.message, new RegExp(target.digest));
      return true;
    });
    // The untouched layer still reads, so it was the tampering that failed.
    assert.deepEqual(await readAll(await source.blob(image.layers[0]!)), image.layers[0]!.data);
  });

  it('errors the blob stream when the descriptor size is not what the registry sends', async () => {
    const source = await registrySource(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry));
    const layer = multi.layers[1]!;
    await assert.rejects(readAll(await source.blob({ ...layer, size: layer.size + 1 })), ContentVerificationError);
    await assert.rejects(readAll(await source.blob({ ...layer, size: layer.size - 1 })), ContentVerificationError);
  });
});

describe('registry client, htpasswd Basic auth', () => {
  let registry: TestRegistry;

  before(async () => {
    registry = await startRegistry({ auth: 'basic' });
    await pushImage(registry, 'test/multi', multi, 'v1');
  });
  after(() => registry.stop());

  it('pulls with username and password, and with the base64 auth field', async () => {
    await pullAndCheck(
      `${registry.host}/test/multi:v1`,
      await plainHttp(dirs, registry, { auth: { username: REGISTRY_USER, password: REGISTRY_PASSWORD } }),
      multi,
    );
    const auth = Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64');
    await pullAndCheck(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry, { auth: { auth } }), multi);
  });

  it('reports a wrong password, or none, as unauthenticated', async () => {
    for (const auth of [{ username: REGISTRY_USER, password: 'wrong' }, undefined]) {
      const source = await registrySource(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry, { auth }));
      await assert.rejects(source.resolve(), (error: Error) => {
        assert.ok(error instanceof RegistryUnauthenticatedError, String(error));
        assert.match(error.message, new RegExp(`${registry.url}/v2/test/multi/manifests/v1`));
        return true;
      });
    }
  });
});

describe('registry client, Bearer token auth', () => {
  let registry: TestRegistry;

  before(async () => {
    registry = await startRegistry({ auth: 'token' });
    await pushImage(registry, 'test/multi', multi, 'v1');
  });
  after(() => registry.stop());

  it('gets one token with Basic credentials and reuses it for the manifest and every blob', async () => {
    registry.tokenRequests.length = 0;
    await pullAndCheck(
      `${registry.host}/test/multi:v1`,
      await plainHttp(dirs, registry, { auth: { username: REGISTRY_USER, password: REGISTRY_PASSWORD } }),
      multi,
    );
    assert.deepEqual(registry.tokenRequests, [
      { method: 'GET', grantType: 'basic', scopes: ['repository:test/multi:pull'], granted: true },
    ]);
  });

  it('trades an identity token for an access token with a refresh_token grant', async () => {
    registry.tokenRequests.length = 0;
    await pullAndCheck(
      `${registry.host}/test/multi:v1`,
      await plainHttp(dirs, registry, { auth: { identityToken: REGISTRY_IDENTITY_TOKEN } }),
      multi,
    );
    assert.deepEqual(registry.tokenRequests, [
      { method: 'POST', grantType: 'refresh_token', scopes: ['repository:test/multi:pull'], granted: true },
    ]);
  });

  it('reports credentials the token service refuses, and an anonymous token without access, as unauthenticated', async () => {
    for (const auth of [{ username: REGISTRY_USER, password: 'wrong' }, { identityToken: 'stale' }, undefined]) {
      const source = await registrySource(`${registry.host}/test/multi:v1`, await plainHttp(dirs, registry, { auth }));
      await assert.rejects(source.resolve(), RegistryUnauthenticatedError);
    }
  });
});

describe('registry client, registry down', () => {
  let registry: TestRegistry;

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'test/multi', multi, 'v1');
  });
  after(() => registry.stop());

  it('reports unavailable, naming every host tried, once the registry is killed', async () => {
    const options = await plainHttp(dirs, registry);
    await pullAndCheck(`${registry.host}/test/multi:v1`, options, multi);
    await registry.kill();
    const mirror = 'http://127.0.0.1:1';
    const withMirror = {
      hostsDir: await hostsDir(dirs, { [registry.host]: `server = "${registry.url}"\n[host."${mirror}"]\n` }),
    };
    for (const opts of [options, withMirror]) {
      const source = await registrySource(`${registry.host}/test/multi:v1`, opts);
      await assert.rejects(source.resolve(), (error: Error) => {
        assert.ok(error instanceof RegistryUnavailableError, String(error));
        assert.match(error.message, new RegExp(`${registry.host}/test/multi:v1`));
        assert.match(error.message, new RegExp(`${registry.url}/v2/test/multi/manifests/v1 \\(.*ECONNREFUSED`));
        if (opts === withMirror)
          assert.match(
            error.message,
            new RegExp(`${mirror}/v2/test/multi/manifests/v1 .*ECONNREFUSED.*${registry.url}`),
          );
        return true;
      });
    }
  });
});
