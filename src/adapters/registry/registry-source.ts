import { readFile } from 'node:fs/promises';
import { pipeline, type Readable } from 'node:stream';
import type { Descriptor, ImageSource } from '../images/image-source.js';
import { formatImageRef, parseImageRef, type ImageRef } from '../containerd/image-ref.js';
import {
  hostPlatform,
  MEDIA_TYPES,
  parseImageDocument,
  selectManifest,
  sha256Digest,
  type OciDescriptor,
  type Platform,
} from '../containerd/image-manifest.js';
import { RegistryAuthorizer, parseChallenges, type RegistryAuth } from './registry-auth.js';
import {
  ContentVerificationError,
  HostsConfigError,
  PlatformNotFoundError,
  RegistryNotFoundError,
  RegistryPermissionDeniedError,
  RegistryProtocolError,
  RegistryUnauthenticatedError,
  RegistryUnavailableError,
  type RegistryAttempt,
} from './registry-errors.js';
import { loadRegistryHosts, type HostCapability, type RegistryHost } from './registry-hosts.js';
import {
  AttemptFailure,
  nodeHttpTransport,
  readBody,
  readErrorBody,
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
} from './registry-http.js';
import { digestOf, VerifyingStream } from './verifying-stream.js';

/*
 * An ImageSource over the OCI distribution API. Each request tries the registry's hosts
 * in order (mirrors from hosts.toml, then the server) and keeps what each one answered,
 * so a failure says where it looked. Every byte handed out is checked against the digest
 * and size it was asked for.
 */

/** Manifests and indexes are read whole; containerd refuses larger ones too. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** fetch() buffers; configs and manifests are far below this, layers go through blob(). */
export const MAX_FETCH_BYTES = 16 * 1024 * 1024;
export const MAX_REDIRECTS = 5;

const MANIFEST_TYPES: readonly string[] = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerManifest,
];
const ACCEPT_MANIFESTS = MANIFEST_TYPES.join(', ');
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const USER_AGENT = 'cri-ledger';

export interface RegistrySourceOptions {
  /** containerd-style certs.d directory; undefined means every registry uses its standard endpoint. */
  hostsDir?: string;
  /** Credentials from the CRI PullImageRequest. */
  auth?: RegistryAuth;
  /** Which manifest of an index platformManifest() follows; the host's by default. */
  platform?: Platform;
  /** How requests are sent; node:http(s) by default. */
  transport?: HttpTransport;
}

/** A resolved, platform-specific image manifest and what it points at. */
export interface PlatformManifest {
  descriptor: Descriptor;
  bytes: Buffer;
  config: Descriptor;
  layers: Descriptor[];
}

type FailureKind = AttemptFailure['kind'] | 'not-found';

function formatPlatform(p: Platform | undefined): string {
  return p ? [p.os, p.architecture, p.variant].filter(Boolean).join('/') : '(no platform)';
}

function toDescriptor(d: OciDescriptor, fallbackType: string): Descriptor {
  return {
    mediaType: d.mediaType ?? fallbackType,
    digest: d.digest,
    size: d.size,
    ...(d.platform ? { platform: d.platform } : {}),
  };
}

/** `MANIFEST_UNKNOWN manifest unknown` from a distribution error body, else its start. */
function errorDetail(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0)
      return parsed.errors.map((e) => [e.code, e.message].filter(Boolean).join(' ')).join('; ');
  } catch {
    // Not JSON: a proxy's HTML page, say.
  }
  return body.replace(/\s+/g, ' ').trim().slice(0, 120);
}

function classify(status: number): FailureKind {
  if (status === 404) return 'not-found';
  if (status === 401) return 'unauthenticated';
  if (status === 403) return 'denied';
  if (status === 429 || status >= 500) return 'unavailable';
  return 'protocol';
}

export class RegistrySource implements ImageSource {
  readonly reference: string;
  private readonly authorizer: RegistryAuthorizer;
  private servedBy: RegistryHost | undefined;

  constructor(
    private readonly ref: ImageRef,
    /** In the order they are tried. */
    readonly hosts: readonly RegistryHost[],
    private readonly tls: ReadonlyMap<RegistryHost, NonNullable<HttpRequest['tls']>>,
    auth: RegistryAuth | undefined,
    private readonly platform: Platform,
    private readonly transport: HttpTransport,
  ) {
    this.reference = formatImageRef(ref);
    this.authorizer = new RegistryAuthorizer(auth, transport);
  }

  /** The host that served the last request, else the server (the last host). */
  get origin(): string {
    return (this.servedBy ?? this.hosts[this.hosts.length - 1]!).origin;
  }

  async resolve(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const object = this.ref.digest ?? this.ref.tag!;
    // A tag needs a host trusted to resolve names; a digest is checked, so any puller will do.
    const res = await this.request(
      `manifest ${object}`,
      `manifests/${object}`,
      ACCEPT_MANIFESTS,
      this.ref.digest ? 'pull' : 'resolve',
    );
    const bytes = await this.readWhole(res.body, MAX_MANIFEST_BYTES, object);
    const mediaType = this.manifestMediaType(res.headers['content-type'], bytes);
    // By tag, the registry's Docker-Content-Digest (when sent) must match what arrived.
    const claimed = this.ref.digest ?? res.headers['docker-content-digest'];
    const actual = (claimed && digestOf(bytes, claimed)) || sha256Digest(bytes);
    if (claimed && actual !== claimed) {
      throw new ContentVerificationError(
        this.reference,
        claimed,
        `the manifest from ${this.origin} hashes to ${actual}`,
      );
    }
    return { descriptor: { mediaType, digest: actual, size: bytes.length }, bytes };
  }

  async fetch(descriptor: Descriptor): Promise<Buffer> {
    if (descriptor.size > MAX_FETCH_BYTES) {
      throw new RegistryProtocolError(
        this.reference,
        this.ref.domain,
        `${descriptor.digest} is ${descriptor.size} bytes, more than fetch() buffers (${MAX_FETCH_BYTES}); read it with blob()`,
      );
    }
    return this.readWhole(await this.blob(descriptor), MAX_FETCH_BYTES, descriptor.digest);
  }

  async blob(descriptor: Descriptor): Promise<Readable> {
    const verifier = new VerifyingStream(descriptor, this.reference);
    const isManifest = MANIFEST_TYPES.includes(descriptor.mediaType);
    const path = `${isManifest ? 'manifests' : 'blobs'}/${descriptor.digest}`;
    const res = await this.request(
      `${isManifest ? 'manifest' : 'blob'} ${descriptor.digest}`,
      path,
      isManifest ? ACCEPT_MANIFESTS : '*/*',
      'pull',
    );
    // A body cut short (the registry died, the connection reset) reaches the reader as
    // the registry being unavailable, naming the blob and where it was read from.
    const origin = this.origin;
    res.body.once('error', (cause) =>
      verifier.destroy(
        new RegistryUnavailableError(
          this.reference,
          this.ref.domain,
          [{ url: origin, outcome: `reading ${descriptor.digest} broke off: ${cause.message}` }],
          { cause },
        ),
      ),
    );
    pipeline(res.body, verifier, () => {});
    return verifier;
  }

  /** Resolves the reference and, through an index, the manifest for this source's platform. */
  async platformManifest(): Promise<PlatformManifest> {
    let { descriptor, bytes } = await this.resolve();
    let doc = this.parse(bytes, descriptor);
    if (doc.kind === 'index') {
      const chosen = selectManifest(doc.manifests, this.platform);
      if (!chosen)
        throw new PlatformNotFoundError(
          this.reference,
          formatPlatform(this.platform),
          doc.manifests.map((m) => formatPlatform(m.platform)),
        );
      descriptor = toDescriptor(chosen, MEDIA_TYPES.ociManifest);
      bytes = await this.fetch(descriptor);
      doc = this.parse(bytes, descriptor);
      if (doc.kind === 'index')
        throw new RegistryProtocolError(
          this.reference,
          this.ref.domain,
          `${descriptor.digest} is an index inside an index`,
        );
    }
    return {
      descriptor,
      bytes,
      config: toDescriptor(doc.config, 'application/vnd.oci.image.config.v1+json'),
      layers: doc.layers.map((l) => toDescriptor(l, 'application/vnd.oci.image.layer.v1.tar+gzip')),
    };
  }

  private parse(bytes: Buffer, descriptor: Descriptor): ReturnType<typeof parseImageDocument> {
    try {
      return parseImageDocument(bytes, descriptor.mediaType);
    } catch (error) {
      throw new RegistryProtocolError(
        this.reference,
        this.ref.domain,
        `${descriptor.digest}: ${(error as Error).message}`,
        [],
        { cause: error },
      );
    }
  }

  private manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
    const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
    if (MANIFEST_TYPES.includes(type)) return type;
    let doc: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown; config?: unknown };
    try {
      doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
    } catch {
      throw new RegistryProtocolError(
        this.reference,
        this.ref.domain,
        `the manifest from ${this.origin} (${type || 'no content type'}) is not JSON`,
      );
    }
    if (typeof doc.mediaType === 'string' && MANIFEST_TYPES.includes(doc.mediaType)) return doc.mediaType;
    if (doc.schemaVersion === 1)
      throw new RegistryProtocolError(this.reference, this.ref.domain, 'Docker schema 1 manifests are not supported');
    // An OCI document may leave mediaType out; its shape says what it is.
    if (Array.isArray(doc.manifests)) return MEDIA_TYPES.ociIndex;
    if (doc.config !== undefined) return MEDIA_TYPES.ociManifest;
    throw new RegistryProtocolError(
      this.reference,
      this.ref.domain,
      `unsupported manifest type ${type || '(none)'} from ${this.origin}`,
    );
  }

  private async readWhole(body: Readable, limit: number, what: string): Promise<Buffer> {
    try {
      return await readBody(body, limit);
    } catch (error) {
      if (error instanceof ContentVerificationError) throw error;
      throw new RegistryUnavailableError(
        this.reference,
        this.ref.domain,
        [{ url: this.origin, outcome: `reading ${what}: ${(error as Error).message}` }],
        { cause: error },
      );
    }
  }

  /** The first 2xx answer among the hosts with `capability`; else the error that best sums up all answers. */
  private async request(what: string, path: string, accept: string, capability: HostCapability): Promise<HttpResponse> {
    const attempts: RegistryAttempt[] = [];
    const kinds: FailureKind[] = [];
    for (const host of this.hosts.filter((h) => h.capabilities.includes(capability))) {
      const url = `${host.api}/${this.ref.path}/${path}`;
      try {
        const res = await this.send(host, new URL(url), accept);
        if (res.status >= 200 && res.status < 300) {
          this.servedBy = host;
          return res;
        }
        const detail = errorDetail(await readErrorBody(res.body));
        attempts.push({ url, outcome: `${res.status}${detail ? ` ${detail}` : ''}` });
        kinds.push(classify(res.status));
      } catch (error) {
        if (error instanceof AttemptFailure) {
          attempts.push({ url, outcome: error.outcome });
          kinds.push(error.kind);
        } else {
          attempts.push({ url, outcome: (error as Error).message });
          kinds.push('unavailable');
        }
      }
    }
    const registry = this.ref.domain;
    if (kinds.includes('unauthenticated')) throw new RegistryUnauthenticatedError(this.reference, registry, attempts);
    if (kinds.includes('denied')) throw new RegistryPermissionDeniedError(this.reference, registry, attempts);
    // The last host is the registry itself: its 404 is the answer even when a mirror was down.
    if (kinds[kinds.length - 1] === 'not-found')
      throw new RegistryNotFoundError(this.reference, registry, what, attempts);
    if (kinds.includes('unavailable') || kinds.length === 0)
      throw new RegistryUnavailableError(this.reference, registry, attempts);
    if (kinds.includes('not-found')) throw new RegistryNotFoundError(this.reference, registry, what, attempts);
    throw new RegistryProtocolError(this.reference, registry, `no host answered ${what}`, attempts);
  }

  /** One GET to one host: with a known token if any, answering a 401 challenge once. */
  private async send(host: RegistryHost, url: URL, accept: string): Promise<HttpResponse> {
    const scope = `repository:${this.ref.path}:pull`;
    const tls = this.tls.get(host);
    const known = this.authorizer.cached(host.origin, scope);
    const first = await this.follow(url, accept, known, tls);
    if (first.status !== 401) return first;
    const challenges = parseChallenges(first.headers['www-authenticate'] ?? '');
    first.body.resume();
    if (known) this.authorizer.forget(host.origin, scope);
    const authorization = await this.authorizer.authorize(host.origin, challenges, scope, tls);
    const second = await this.follow(url, accept, authorization, tls);
    if (second.status !== 401) return second;
    this.authorizer.forget(host.origin, scope);
    const detail = errorDetail(await readErrorBody(second.body));
    throw new AttemptFailure('unauthenticated', `401 with the credentials given${detail ? ` ${detail}` : ''}`);
  }

  private async follow(
    url: URL,
    accept: string,
    authorization: string | undefined,
    tls: HttpRequest['tls'],
  ): Promise<HttpResponse> {
    let current = url;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { accept, 'user-agent': USER_AGENT };
      if (authorization) headers.authorization = authorization;
      const res = await this.transport({ method: 'GET', url: current, headers, ...(tls ? { tls } : {}) });
      if (!REDIRECTS.has(res.status)) return res;
      res.body.resume();
      const location = res.headers.location;
      if (!location) throw new AttemptFailure('protocol', `${res.status} redirect without a Location`);
      if (hop >= MAX_REDIRECTS) throw new AttemptFailure('protocol', `more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, current);
      // Blobs are redirected to storage with a signed URL: the registry's credentials stay with the registry.
      if (next.origin !== current.origin) authorization = undefined;
      current = next;
    }
  }
}

/** An ImageSource for `reference` (normalized as kubelet does), its hosts read from `hostsDir`. */
export async function registrySource(reference: string, options: RegistrySourceOptions = {}): Promise<RegistrySource> {
  const ref = parseImageRef(reference);
  const hosts = await loadRegistryHosts(ref.domain, options.hostsDir);
  const tls = new Map<RegistryHost, NonNullable<HttpRequest['tls']>>();
  for (const host of hosts) {
    const ca = await Promise.all(
      host.ca.map((file) =>
        readFile(file).catch((error: Error) => {
          throw new HostsConfigError(file, `CA for ${host.origin} cannot be read: ${error.message}`, { cause: error });
        }),
      ),
    );
    tls.set(host, { skipVerify: host.skipVerify, ca });
  }
  return new RegistrySource(
    ref,
    hosts,
    tls,
    options.auth,
    options.platform ?? hostPlatform(),
    options.transport ?? nodeHttpTransport(),
  );
}
