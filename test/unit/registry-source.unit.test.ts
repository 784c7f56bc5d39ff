import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { parseImageRef } from '../../src/adapters/containerd/image-ref.js';
import { MEDIA_TYPES, sha256Digest } from '../../src/adapters/containerd/image-manifest.js';
import { parseChallenges } from '../../src/adapters/registry/registry-auth.js';
import {
  ContentVerificationError,
  PlatformNotFoundError,
  RegistryNotFoundError,
  RegistryUnavailableError,
} from '../../src/adapters/registry/registry-errors.js';
import { hostsFromConfig } from '../../src/adapters/registry/registry-hosts.js';
import type { HttpRequest, HttpResponse } from '../../src/adapters/registry/registry-http.js';
import { RegistrySource } from '../../src/adapters/registry/registry-source.js';
import { parseTomlSubset } from '../../src/adapters/registry/toml-subset.js';

type Answer = { status: number; headers?: Record<string, string | undefined>; body?: string | Buffer } | Error;

/** A registry in memory: `URL` -> answer (or a function of the request); records every request. */
function fakeTransport(routes: Record<string, Answer | ((req: HttpRequest) => Answer)>) {
  const requests: HttpRequest[] = [];
  const transport = async (req: HttpRequest): Promise<HttpResponse> => {
    requests.push(req);
    const route = routes[req.url.href];
    const answer =
      typeof route === 'function'
        ? route(req)
        : (route ?? { status: 404, body: '{"errors":[{"code":"NOT_IN_FAKE"}]}' });
    if (answer instanceof Error) throw answer;
    return {
      status: answer.status,
      headers: answer.headers ?? {},
      body: Readable.from([Buffer.from(answer.body ?? '')]),
    };
  };
  return { transport, requests };
}

function source(
  ref: string,
  toml: string | undefined,
  transport: (req: HttpRequest) => Promise<HttpResponse>,
  platform = { os: 'linux', architecture: 'amd64' },
) {
  const parsed = parseImageRef(ref);
  const hosts = hostsFromConfig(
    parsed.domain,
    toml === undefined ? undefined : parseTomlSubset(toml, 'hosts.toml'),
    'hosts.toml',
  );
  return new RegistrySource(parsed, hosts, new Map(), { username: 'u', password: 'p' }, platform, transport);
}

const manifest = JSON.stringify({
  schemaVersion: 2,
  mediaType: MEDIA_TYPES.ociManifest,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: 'sha256:' + 'a'.repeat(64), size: 2 },
  layers: [],
});
const manifestDigest = sha256Digest(Buffer.from(manifest));
const ok = { status: 200, headers: { 'content-type': MEDIA_TYPES.ociManifest }, body: manifest };

describe('WWW-Authenticate parsing', () => {
  it('reads a Bearer challenge with quoted params', () => {
    assert.deepEqual(
      parseChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.example/token',
            service: 'registry.example',
            scope: 'repository:a/b:pull,push',
          },
        },
      ],
    );
  });

  it('reads several challenges and unquoted params', () => {
    assert.deepEqual(parseChallenges('Basic realm="a \\"b\\"", Bearer realm=https://t/token, service=s'), [
      { scheme: 'basic', params: { realm: 'a "b"' } },
      { scheme: 'bearer', params: { realm: 'https://t/token', service: 's' } },
    ]);
  });
});

describe('registry source over a fake transport', () => {
  it('keeps the registry credentials off a cross-origin blob redirect', async () => {
    const blob = Buffer.from('layer bytes');
    const digest = sha256Digest(blob);
    const { transport, requests } = fakeTransport({
      [`https://registry.example/v2/app/blobs/${digest}`]: (req) =>
        req.headers.authorization
          ? { status: 307, headers: { location: 'https://storage.example/b?sig=1' } }
          : { status: 401, headers: { 'www-authenticate': 'Basic realm="r"' } },
      'https://storage.example/b?sig=1': (req) =>
        req.headers.authorization ? { status: 400, body: 'two auths' } : { status: 200, body: blob },
    });
    const s = source('registry.example/app:v1', undefined, transport);
    const chunks: Buffer[] = [];
    for await (const c of await s.blob({ mediaType: 'application/octet-stream', digest, size: blob.length }))
      chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), blob);
    assert.deepEqual(
      requests.map((r) => [r.url.origin, r.headers.authorization]),
      [
        ['https://registry.example', undefined],
        ['https://registry.example', `Basic ${Buffer.from('u:p').toString('base64')}`],
        ['https://storage.example', undefined],
      ],
    );
  });

  it('falls back from a failing mirror to the server, and names both when neither has it', async () => {
    const toml = 'server = "https://registry.example"\n[host."https://mirror.example"]\n';
    const up = fakeTransport({
      'https://mirror.example/v2/app/manifests/v1': { status: 503 },
      'https://registry.example/v2/app/manifests/v1': ok,
    });
    const s = source('registry.example/app:v1', toml, up.transport);
    assert.equal((await s.resolve()).descriptor.digest, manifestDigest);
    assert.equal(s.origin, 'https://registry.example');

    const down = fakeTransport({ 'https://mirror.example/v2/app/manifests/v1': new Error('connect ECONNREFUSED') });
    await assert.rejects(source('registry.example/app:v1', toml, down.transport).resolve(), (error: Error) => {
      // The server's 404 is the answer, though the mirror was down.
      assert.ok(error instanceof RegistryNotFoundError, String(error));
      assert.match(
        error.message,
        /mirror\.example\/v2\/app\/manifests\/v1 \(connect ECONNREFUSED\), https:\/\/registry\.example\/v2\/app\/manifests\/v1 \(404 NOT_IN_FAKE\)/,
      );
      return true;
    });
    const serverDown = fakeTransport({ 'https://registry.example/v2/app/manifests/v1': { status: 502 } });
    await assert.rejects(
      source('registry.example/app:v1', toml, serverDown.transport).resolve(),
      RegistryUnavailableError,
    );
  });

  it('resolves a tag only through hosts with the resolve capability', async () => {
    const { transport, requests } = fakeTransport({ 'https://registry.example/v2/app/manifests/v1': ok });
    await source(
      'registry.example/app:v1',
      '[host."https://pull-only.example"]\ncapabilities = ["pull"]\n',
      transport,
    ).resolve();
    assert.deepEqual(
      requests.map((r) => r.url.origin),
      ['https://registry.example'],
    );
  });

  it('refuses a manifest whose bytes do not match the Docker-Content-Digest', async () => {
    const { transport } = fakeTransport({
      'https://registry.example/v2/app/manifests/v1': {
        ...ok,
        headers: { ...ok.headers, 'docker-content-digest': 'sha256:' + 'b'.repeat(64) },
      },
    });
    await assert.rejects(source('registry.example/app:v1', undefined, transport).resolve(), ContentVerificationError);
  });

  it('says which platforms an index has when none fits', async () => {
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [
        {
          mediaType: MEDIA_TYPES.ociManifest,
          digest: manifestDigest,
          size: manifest.length,
          platform: { os: 'linux', architecture: 's390x' },
        },
      ],
    });
    const { transport } = fakeTransport({
      'https://registry.example/v2/app/manifests/v1': {
        status: 200,
        headers: { 'content-type': MEDIA_TYPES.ociIndex },
        body: index,
      },
    });
    await assert.rejects(
      source('registry.example/app:v1', undefined, transport).platformManifest(),
      (error: Error) =>
        error instanceof PlatformNotFoundError && /linux\/amd64 \(it has: linux\/s390x\)/.test(error.message),
    );
  });
});
