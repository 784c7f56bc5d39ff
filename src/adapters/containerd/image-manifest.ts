import { createHash } from 'node:crypto';
import type { ImageConfig } from '../../commands/ports.js';

/*
 * Pure readers of the OCI (and Docker schema 2) image documents: which manifest of an
 * index fits this host, what a manifest points at, what CreateContainer needs from the
 * config, and the chain id of the layers.
 */

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** An OCI descriptor as the image documents write it (camelCase, number size). */
export interface OciDescriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  s390x: 's390x',
  ppc64: 'ppc64le',
  riscv64: 'riscv64',
};

/** The platform this process runs on, named as Go (and so OCI) names it: linux/amd64 here. */
export function hostPlatform(): Platform {
  const architecture = GO_ARCH[process.arch] ?? process.arch;
  return architecture === 'arm64' ? { os: 'linux', architecture, variant: 'v8' } : { os: 'linux', architecture };
}

export type ImageDocument =
  | { kind: 'index'; manifests: OciDescriptor[] }
  | { kind: 'manifest'; config: OciDescriptor; layers: OciDescriptor[] };

/** Parses a manifest or index blob; `mediaType` is the descriptor's, when it has one. */
export function parseImageDocument(blob: Buffer, mediaType: string): ImageDocument {
  const doc = JSON.parse(blob.toString('utf8')) as {
    mediaType?: string;
    manifests?: unknown;
    config?: unknown;
    layers?: unknown;
  };
  const type = mediaType || doc.mediaType || '';
  const isIndex =
    type === MEDIA_TYPES.ociIndex || type === MEDIA_TYPES.dockerManifestList || (!type && Array.isArray(doc.manifests));
  if (isIndex) {
    if (!Array.isArray(doc.manifests)) throw new Error('image index has no manifests');
    return { kind: 'index', manifests: doc.manifests as OciDescriptor[] };
  }
  if (type && type !== MEDIA_TYPES.ociManifest && type !== MEDIA_TYPES.dockerManifest)
    throw new Error(`unsupported image media type ${type}`);
  if (typeof doc.config !== 'object' || doc.config === null) throw new Error('image manifest has no config');
  return {
    kind: 'manifest',
    config: doc.config as OciDescriptor,
    layers: Array.isArray(doc.layers) ? (doc.layers as OciDescriptor[]) : [],
  };
}

function matches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  // arm64 images often leave the variant out; v8 is the default there.
  return !wanted.variant || !candidate.variant || candidate.variant === wanted.variant;
}

/**
 * The index entry to follow for `platform`: the first that names it, else (as containerd
 * does) the first that names no platform at all; undefined when none fits.
 */
export function selectManifest(manifests: readonly OciDescriptor[], platform: Platform): OciDescriptor | undefined {
  return manifests.find((m) => matches(m.platform, platform)) ?? manifests.find((m) => !m.platform);
}

/** What an image config says, as far as cri-ledger uses it. */
export interface ParsedImageConfig {
  config: ImageConfig;
  diffIds: string[];
}

interface RawConfig {
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    StopSignal?: string;
    Volumes?: Record<string, unknown> | null;
    Labels?: Record<string, string> | null;
  } | null;
  rootfs?: { diff_ids?: string[] };
}

/** The config blob's `config` fields and its layers' diff ids. */
export function parseImageConfig(blob: Buffer): ParsedImageConfig {
  const raw = JSON.parse(blob.toString('utf8')) as RawConfig;
  const c = raw.config ?? {};
  const config: ImageConfig = {};
  if (c.Entrypoint?.length) config.entrypoint = [...c.Entrypoint];
  if (c.Cmd?.length) config.cmd = [...c.Cmd];
  if (c.Env?.length) config.env = [...c.Env];
  if (c.WorkingDir) config.workingDir = c.WorkingDir;
  if (c.User) config.user = c.User;
  if (c.StopSignal) config.stopSignal = c.StopSignal;
  if (c.Volumes && Object.keys(c.Volumes).length > 0) config.volumes = Object.keys(c.Volumes).sort();
  if (c.Labels && Object.keys(c.Labels).length > 0) config.labels = { ...c.Labels };
  return { config, diffIds: [...(raw.rootfs?.diff_ids ?? [])] };
}

/**
 * The chain id of a layer stack: chainID(1) = diffID(1), chainID(n) = sha256(chainID(n-1)
 * + " " + diffID(n)). It names the committed snapshot of the unpacked layers; '' for none.
 */
export function chainId(diffIds: readonly string[]): string {
  let chain = '';
  for (const diffId of diffIds) {
    chain = chain === '' ? diffId : `sha256:${createHash('sha256').update(`${chain} ${diffId}`).digest('hex')}`;
  }
  return chain;
}

/** `sha256:<hex>` of `blob`, to check a blob against the digest it was read by. */
export function sha256Digest(blob: Buffer): string {
  return `sha256:${createHash('sha256').update(blob).digest('hex')}`;
}
