import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { REGISTRY_PASSWORD, REGISTRY_USER, startRegistry, type TestRegistry } from '../support/registry.js';
import {
  busyboxBase,
  composeImage,
  composeIndex,
  fileLayer,
  otherPlatform,
  pushImage,
  pushIndex,
  type ComposedImage,
} from '../support/registry-images.js';

/*
 * The CRI ImageService over the socket, pulling from Debian's docker-registry on a free
 * loopback port (plain HTTP through the service's hosts.toml dir), into a private
 * containerd: pulls by tag, digest and name:tag@digest, a mirror mapping, one download
 * for concurrent pulls, a corrupt blob, a dead registry, credentials, and the other
 * image RPCs. Each pull's events are checked in the image's stream.
 */

/**
 * A TCP proxy to `registry` that stops forwarding a response once `stallAfter` bytes of
 * it went through (`midway` resolves then); `cut()` drops every connection.
 */
async function stallingProxy(registry: TestRegistry, stallAfter: number) {
  const port = Number(registry.host.split(':')[1]);
  const sockets = new Set<Socket>();
  let reached!: () => void;
  const midway = new Promise<void>((r) => (reached = r));
  const proxy = {
    port: 0,
    stallAfter,
    midway,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => {
      proxy.cut();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let forwarded = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (forwarded >= proxy.stallAfter) {
        upstream.pause();
        reached();
        return;
      }
      forwarded += chunk.length;
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', end).on('end', () => client.end());
    client.on('error', end).on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.port = (server.address() as AddressInfo).port;
  return proxy;
}

interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
  uid: { value: string } | null;
  username: string;
}

describe('the image service over the CRI socket, pulling from a real registry', () => {
  let h: CriHarness;
  let registry: TestRegistry;
  let secured: TestRegistry;
  let multi: ComposedImage;
  let listed: ComposedImage;
  let user: ComposedImage;
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const imageCall = <T = Record<string, unknown>>(method: string, request: object): Promise<T> =>
    h.imageCall<T>(method, request);
  const pull = (image: string, auth?: object) =>
    imageCall<{ imageRef: string }>('pullImage', { image: { image }, ...(auth ? { auth } : {}) });
  const status = (image: string) => imageCall<{ image: CriImage | null }>('imageStatus', { image: { image } });
  const failure = (p: Promise<unknown>) =>
    p.then(() => assert.fail('the call succeeded')).catch((e: ServiceError) => e);
  const events = async (stream: string, type?: string) => {
    const r = await runCli([
      'events',
      '--socket',
      h.socket,
      '--stream',
      stream,
      ...(type ? ['--type', type] : []),
      '--json',
    ]);
    return r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; data: Record<string, unknown> });
  };
  /** Plain HTTP to a test registry, for references that name it. */
  const hostsFor = async (r: TestRegistry) => {
    await mkdir(join(h.registryConfigDir, r.host), { recursive: true });
    await writeFile(join(h.registryConfigDir, r.host, 'hosts.toml'), `server = "${r.url}"\n`);
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-images-' });
    registry = await startRegistry();
    secured = await startRegistry({ auth: 'basic' });
    await hostsFor(registry);
    await hostsFor(secured);
    const base = await busyboxBase();
    multi = composeImage(base, { extraLayers: [await fileLayer({ 'etc/pulled.txt': 'from the registry\n' })] });
    await pushImage(registry, 'test/multi', multi, 'v1');
    await pushImage(registry, 'test/multi', multi, 'v2');
    listed = composeImage(base, { format: 'docker' });
    await pushIndex(
      registry,
      'test/list',
      composeIndex([composeImage(base, { format: 'docker', platform: otherPlatform() }), listed], 'docker'),
      'v1',
    );
    user = composeImage(base, { user: '1234:1234', extraLayers: [await fileLayer({ 'etc/user.txt': 'u\n' })] });
    await pushImage(registry, 'test/user', user, 'v1');
    await pushImage(secured, 'test/private', multi, 'v1');
    await pushImage(registry, 'library/mirrored', multi, 'latest');
  });
  after(async () => {
    await registry?.stop();
    await secured?.stop();
    await h?.cleanup();
  });

  it('pulls by tag, records the pull, and ImageStatus shows the image', async () => {
    const ref = `${registry.host}/test/multi:v1`;
    const { imageRef } = await pull(ref);
    assert.equal(imageRef, multi.config.digest);
    const s = (await status(ref)).image!;
    assert.equal(s.id, multi.config.digest);
    assert.deepEqual(s.repoTags, [ref]);
    assert.deepEqual(s.repoDigests, [`${registry.host}/test/multi@${multi.manifest.digest}`]);
    const types = (await events(`image-${ref}`)).map((e) => e.type);
    assert.equal(types[0], 'ImagePullStarted');
    assert.equal(types.at(-1), 'ImagePulled');
    const pulled = (await events(`image-${ref}`, 'ImagePulled'))[0]!.data as {
      imageId: string;
      layers: Array<{ digest: string }>;
      origin: string;
      targetDigest: string;
    };
    assert.equal(pulled.imageId, multi.config.digest);
    assert.equal(pulled.targetDigest, multi.manifest.digest);
    assert.equal(pulled.origin, registry.url);
    assert.deepEqual(
      pulled.layers.map((l) => l.digest),
      multi.layers.map((l) => l.digest),
    );
  });

  it('pulls and lists from the command line: cri-ledger images pull and images ls', async () => {
    const ref = `${registry.host}/test/user:v1`;
    const pulled = await runCli(['images', 'pull', ref, '--socket', h.socket]);
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.equal(pulled.stdout.trim(), user.config.digest);
    const listed = await runCli(['images', 'ls', '--socket', h.socket]);
    assert.match(
      listed.stdout,
      new RegExp(`^${ref.replace(/[.:/]/g, '\\$&')}\\s+${user.config.digest.slice(7, 19)}\\s`, 'm'),
    );
    const missing = await runCli(['images', 'pull', `${registry.host}/test/user:nope`, '--socket', h.socket]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND/);
  });

  it('pulls by digest and by name:tag@digest, keeping the digest', async () => {
    const byDigest = `${registry.host}/test/multi@${multi.manifest.digest}`;
    assert.equal((await pull(byDigest)).imageRef, multi.config.digest);
    assert.equal((await pull(`${registry.host}/test/multi:v2@${multi.manifest.digest}`)).imageRef, multi.config.digest);
    assert.equal((await status(byDigest)).image?.id, multi.config.digest);
  });

  it('picks the host platform from a manifest list, and reports the image user as a uid', async () => {
    assert.equal((await pull(`${registry.host}/test/list:v1`)).imageRef, listed.config.digest);
    await pull(`${registry.host}/test/user:v1`);
    assert.deepEqual((await status(`${registry.host}/test/user:v1`)).image?.uid, { value: '1234' });
  });

  it('pulls docker.io references through a hosts.toml mirror', async () => {
    await mkdir(join(h.registryConfigDir, 'docker.io'), { recursive: true });
    await writeFile(
      join(h.registryConfigDir, 'docker.io', 'hosts.toml'),
      `server = "https://registry-1.docker.io"\n\n[host."${registry.url}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    assert.equal((await pull('mirrored')).imageRef, multi.config.digest);
    assert.ok(
      (await status('docker.io/library/mirrored:latest')).image?.repoTags.includes('docker.io/library/mirrored:latest'),
    );
    const started = (await events('image-docker.io/library/mirrored:latest', 'ImagePulled'))[0]!.data as {
      origin: string;
    };
    assert.equal(started.origin, registry.url, 'served by the mirror');
  });

  it('shares one download between 8 concurrent pulls of one reference', async () => {
    const ref = `${registry.host}/test/multi:v2`;
    const results = await Promise.all(Array.from({ length: 8 }, () => pull(ref)));
    assert.deepEqual(new Set(results.map((r) => r.imageRef)), new Set([multi.config.digest]));
    assert.equal((await events(`image-${ref}`, 'ImagePullStarted')).length, 1);
  });

  it('refuses a corrupt blob with DATA_LOSS, records the failure, and leaves no image, lease or ingest', async () => {
    const corrupt = composeImage(await busyboxBase(), {
      extraLayers: [await fileLayer({ 'etc/corrupt.txt': 'will be damaged\n' })],
    });
    await pushImage(registry, 'test/corrupt', corrupt, 'v1');
    const victim = corrupt.layers.at(-1)!;
    await writeFile(registry.blobFile(victim.digest), Buffer.alloc(victim.size, 0x41));
    const ref = `${registry.host}/test/corrupt:v1`;
    const e = await failure(pull(ref));
    assert.equal(e.code, Status.DATA_LOSS, e.details);
    assert.equal((await status(ref)).image, null);
    assert.equal((await events(`image-${ref}`)).at(-1)?.type, 'ImagePullFailed');
    const leases = await unaryCall<{ leases: Array<{ id: string }> }>(h.api.leases, 'List', { filters: [] });
    assert.deepEqual(
      leases.leases.map((l) => l.id).filter((id) => !id.startsWith('cri-ledger-fsinfo')),
      [],
    );
  });

  it('answers NOT_FOUND for a missing tag, naming the reference and the registry', async () => {
    const e = await failure(pull(`${registry.host}/test/multi:nope`));
    assert.equal(e.code, Status.NOT_FOUND);
    assert.match(e.details, /test\/multi:nope/);
    assert.match(e.details, new RegExp(registry.host.replace(/\./g, '\\.')));
  });

  it('answers UNAUTHENTICATED for wrong credentials, and pulls with the right ones', async () => {
    const ref = `${secured.host}/test/private:v1`;
    assert.equal((await failure(pull(ref))).code, Status.UNAUTHENTICATED);
    assert.equal(
      (await failure(pull(ref, { username: REGISTRY_USER, password: 'wrong' }))).code,
      Status.UNAUTHENTICATED,
    );
    assert.equal(
      (await pull(ref, { username: REGISTRY_USER, password: REGISTRY_PASSWORD })).imageRef,
      multi.config.digest,
    );
  });

  it('lists images, reports ImageFsInfo, and removes by id every tag (an absent image too)', async () => {
    const { images } = await imageCall<{ images: CriImage[] }>('listImages', {});
    const m = images.find((i) => i.id === multi.config.digest)!;
    assert.ok(
      m.repoTags.includes(`${registry.host}/test/multi:v1`) && m.repoTags.includes(`${registry.host}/test/multi:v2`),
    );
    const fs = await imageCall<{
      imageFilesystems: Array<{ fsId: { mountpoint: string }; usedBytes: { value: string } }>;
    }>('imageFsInfo', {});
    assert.ok(BigInt(fs.imageFilesystems[0]!.usedBytes.value) > 0n);
    assert.match(fs.imageFilesystems[0]!.fsId.mountpoint, /io\.containerd\.snapshotter\.v1\.overlayfs$/);
    await imageCall('removeImage', { image: { image: multi.config.digest } });
    for (const tag of m.repoTags) assert.equal((await status(tag)).image, null, `${tag} is gone`);
    assert.equal((await events(`image-${registry.host}/test/multi:v1`)).at(-1)?.type, 'ImageRemoved');
    await imageCall('removeImage', { image: { image: multi.config.digest } });
    await imageCall('removeImage', { image: { image: `${registry.host}/never/pulled:v1` } });
  });

  it('fails clearly when the registry dies mid-pull, leaves nothing, and a retry succeeds', async () => {
    const big = composeImage(await busyboxBase(), {
      extraLayers: [await fileLayer({ 'big.bin': randomBytes(16 * 1024 * 1024) })],
    });
    await pushImage(registry, 'test/big', big, 'v1');
    // A proxy in front of the registry holds the blob half-way, so the registry dies
    // mid-pull every time, however fast or slow the machine.
    const proxy = await stallingProxy(registry, 4 * 1024 * 1024);
    try {
      await mkdir(join(h.registryConfigDir, 'stalling.test'), { recursive: true });
      await writeFile(
        join(h.registryConfigDir, 'stalling.test', 'hosts.toml'),
        `server = "http://127.0.0.1:${proxy.port}"\n`,
      );
      const ref = 'stalling.test/test/big:v1';
      const pending = failure(pull(ref));
      await proxy.midway;
      await registry.kill();
      proxy.cut();
      const e = await pending;
      assert.equal(e.code, Status.UNAVAILABLE, `${Status[e.code]}: ${e.details}`);
      assert.match(e.details, /stalling\.test\/test\/big:v1/);
      assert.equal((await status(ref)).image, null);
      assert.equal((await events(`image-${ref}`)).at(-1)?.type, 'ImagePullFailed');
      proxy.stallAfter = Infinity;
      await registry.restart();
      assert.equal((await pull(ref)).imageRef, big.config.digest);
      const leases = await unaryCall<{ leases: Array<{ id: string }> }>(h.api.leases, 'List', { filters: [] });
      assert.deepEqual(
        leases.leases.map((l) => l.id).filter((id) => !id.startsWith('cri-ledger-fsinfo')),
        [],
      );
    } finally {
      await proxy.close();
    }
  });

  it('answers UNAVAILABLE naming the hosts it tried when the registry is gone', async () => {
    await registry.kill();
    const e = await failure(pull(`${registry.host}/test/list:v2`));
    assert.equal(e.code, Status.UNAVAILABLE);
    assert.match(e.details, new RegExp(registry.url.replace(/[.:/]/g, '\\$&')));
  });

  it('runs a container from a pulled image', async () => {
    const ref = `${secured.host}/test/private:v1`;
    // Removed by id above (it shares the config of test/multi): pull it again.
    await pull(ref, { username: REGISTRY_USER, password: REGISTRY_PASSWORD });
    const pod = {
      metadata: { name: 'pulled', uid: 'uid-pulled', namespace: 'default', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    };
    const podSandboxId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
    const { containerId } = await call<{ containerId: string }>('createContainer', {
      podSandboxId,
      sandboxConfig: pod,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: ref }, command: ['sleep', '3600'] },
    });
    await call('startContainer', { containerId });
    const r = await call<{ stdout: Buffer; exitCode: number }>('execSync', {
      containerId,
      cmd: ['cat', '/etc/pulled.txt'],
      timeout: 5,
    });
    assert.deepEqual([r.stdout.toString(), r.exitCode], ['from the registry\n', 0]);
    await call('removePodSandbox', { podSandboxId });
  });

  it('keeps the layer blobs in containerd only when images.keepLayerBlobs is set', async () => {
    const kept = composeImage(await busyboxBase(), { extraLayers: [await fileLayer({ 'etc/kept.txt': 'kept\n' })] });
    // The plain registry was killed by the mid-pull test; the secured one serves.
    await pushImage(secured, 'test/kept', kept, 'v1');
    const ref = `${secured.host}/test/kept:v1`;
    const auth = { username: REGISTRY_USER, password: REGISTRY_PASSWORD };
    const layer = kept.layers.at(-1)!.digest;
    const hasBlob = (digest: string): Promise<boolean> =>
      unaryCall(h.api.content, 'Info', { digest }).then(
        () => true,
        (error: ServiceError) => {
          if (error.code === Status.NOT_FOUND) return false;
          throw error;
        },
      );
    await pull(ref, auth);
    assert.equal(await hasBlob(layer), false, 'streamed into its snapshot, the layer blob is not kept');
    await imageCall('removeImage', { image: { image: ref } });
    await h.restart(undefined, { CRI_LEDGER_IMAGES_KEEP_LAYER_BLOBS: 'true' });
    try {
      await pull(ref, auth);
      assert.equal(await hasBlob(layer), true, 'the classic way keeps it');
      assert.equal((await status(ref)).image?.id, kept.config.digest);
      await imageCall('removeImage', { image: { image: ref } });
      assert.equal(await hasBlob(layer), false, 'RemoveImage releases it');
    } finally {
      await h.restart();
    }
  });
});
