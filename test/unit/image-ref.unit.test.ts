import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  chainId,
  parseImageConfig,
  parseImageDocument,
  selectManifest,
  MEDIA_TYPES,
} from '../../src/adapters/containerd/image-manifest.js';
import { normalizeImageRef, parseImageRef, tryParseImageRef } from '../../src/adapters/containerd/image-ref.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const sha = (text: string): string => `sha256:${createHash('sha256').update(text).digest('hex')}`;

describe('normalizeImageRef', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest'],
    ['someone/tool', 'docker.io/someone/tool:latest'],
    ['registry.k8s.io/pause:3.6', 'registry.k8s.io/pause:3.6'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/team/app:v2', 'localhost:5000/team/app:v2'],
    [`busybox@${DIGEST}`, `docker.io/library/busybox@${DIGEST}`],
    // The digest wins over the tag, as in containerd's ParseDockerRef.
    [`busybox:1.36@${DIGEST}`, `docker.io/library/busybox@${DIGEST}`],
    [`quay.io/org/app:v1@${DIGEST}`, `quay.io/org/app@${DIGEST}`],
  ];
  for (const [input, expected] of cases) {
    it(`normalizes ${input}`, () => assert.equal(normalizeImageRef(input), expected));
  }

  it('splits the reference into registry, path, repository and tag', () => {
    assert.deepEqual(parseImageRef('busybox'), {
      domain: 'docker.io',
      path: 'library/busybox',
      repository: 'docker.io/library/busybox',
      tag: 'latest',
    });
    assert.deepEqual(parseImageRef(`a.io/b@${DIGEST}`), {
      domain: 'a.io',
      path: 'b',
      repository: 'a.io/b',
      digest: DIGEST,
    });
  });

  for (const bad of [
    '',
    'BusyBox',
    'busybox:',
    'busybox@sha256:abc',
    'a//b',
    'ab'.repeat(32),
    'busybox:tag with space',
    '-lead',
  ]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => normalizeImageRef(bad), InvalidArgumentError);
      assert.equal(tryParseImageRef(bad), undefined);
    });
  }
});

describe('chainId', () => {
  const d1 = sha('layer one');
  const d2 = sha('layer two');
  const d3 = sha('layer three');

  it('is the diff id for one layer and empty for none', () => {
    assert.equal(chainId([d1]), d1);
    assert.equal(chainId([]), '');
  });

  it('hashes the parent chain id, a space and the next diff id', () => {
    const two = sha(`${d1} ${d2}`);
    assert.equal(chainId([d1, d2]), two);
    assert.equal(chainId([d1, d2, d3]), sha(`${two} ${d3}`));
    assert.notEqual(chainId([d2, d1]), two);
  });
});

describe('image documents', () => {
  const amd64 = {
    mediaType: MEDIA_TYPES.ociManifest,
    digest: sha('amd64'),
    size: 1,
    platform: { os: 'linux', architecture: 'amd64' },
  };
  const arm64 = {
    mediaType: MEDIA_TYPES.ociManifest,
    digest: sha('arm64'),
    size: 1,
    platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  };
  const bare = { mediaType: MEDIA_TYPES.ociManifest, digest: sha('bare'), size: 1 };

  it('picks the index entry for the host platform, else one that names no platform', () => {
    assert.equal(selectManifest([arm64, amd64], { os: 'linux', architecture: 'amd64' }), amd64);
    assert.equal(selectManifest([arm64, bare, amd64], { os: 'linux', architecture: 'arm64', variant: 'v8' }), arm64);
    assert.equal(selectManifest([arm64, bare], { os: 'linux', architecture: 'amd64' }), bare);
    assert.equal(selectManifest([arm64], { os: 'linux', architecture: 'amd64' }), undefined);
  });

  it('tells an index from a manifest by media type or shape', () => {
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [amd64] }));
    assert.equal(parseImageDocument(index, '').kind, 'index');
    assert.equal(parseImageDocument(index, MEDIA_TYPES.dockerManifestList).kind, 'index');
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: bare, layers: [amd64] }));
    const doc = parseImageDocument(manifest, MEDIA_TYPES.dockerManifest);
    assert.equal(doc.kind, 'manifest');
    assert.throws(() => parseImageDocument(manifest, 'application/vnd.docker.distribution.manifest.v1+prettyjws'));
  });

  it('reads the config fields CreateContainer uses', () => {
    const blob = Buffer.from(
      JSON.stringify({
        config: {
          Entrypoint: ['/init'],
          Cmd: null,
          Env: ['A=1'],
          WorkingDir: '/w',
          User: 'app',
          StopSignal: 'SIGINT',
          Volumes: { '/b': {}, '/a': {} },
          Labels: { k: 'v' },
        },
        rootfs: { type: 'layers', diff_ids: [sha('x')] },
      }),
    );
    assert.deepEqual(parseImageConfig(blob), {
      config: {
        entrypoint: ['/init'],
        env: ['A=1'],
        workingDir: '/w',
        user: 'app',
        stopSignal: 'SIGINT',
        volumes: ['/a', '/b'],
        labels: { k: 'v' },
      },
      diffIds: [sha('x')],
    });
    assert.deepEqual(parseImageConfig(Buffer.from('{"config":null}')), { config: {}, diffIds: [] });
  });
});
