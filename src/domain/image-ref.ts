import { InvalidArgumentError } from './errors.js';

/*
 * Image references, normalized the way kubelet and containerd do (docker's
 * ParseDockerRef): a registry-less name is on docker.io, a single-component docker.io
 * name is under `library/`, a name without tag or digest gets `:latest`, and a name with
 * both a tag and a digest keeps only the digest (the digest is what gets used).
 */

/** The registry a reference without one is on. */
export const DEFAULT_REGISTRY = 'docker.io';
/** The tag a reference without a tag or digest gets. */
export const DEFAULT_TAG = 'latest';

const MAX_NAME_LENGTH = 255;
const DOMAIN_PATTERN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$/;
const PATH_COMPONENT_PATTERN = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_PATTERN = /^[\w][\w.-]{0,127}$/;
const DIGEST_PATTERN = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256_DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** A reference split into its parts; `repository` is `domain/path`. */
export interface ImageRef {
  domain: string;
  path: string;
  repository: string;
  tag?: string;
  digest?: string;
}

function invalid(ref: string, detail: string): InvalidArgumentError {
  return new InvalidArgumentError('image', `"${ref}" is not a valid image reference: ${detail}`);
}

/** Splits and normalizes `ref`; throws InvalidArgumentError when it is not a reference. */
export function parseImageRef(ref: string): ImageRef {
  if (ref.length === 0) throw invalid(ref, 'empty');
  if (/^[0-9a-f]{64}$/.test(ref)) throw invalid(ref, 'a 64-hex string is an image id, not a reference');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_PATTERN.test(digest)) throw invalid(ref, `bad digest "${digest}"`);
    if (digest.startsWith('sha256:') && !SHA256_DIGEST_PATTERN.test(digest))
      throw invalid(ref, 'a sha256 digest is 64 lowercase hex');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_PATTERN.test(tag)) throw invalid(ref, `bad tag "${tag}"`);
  }
  let domain = DEFAULT_REGISTRY;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    // docker's rule: the first component is a registry when it looks like a host name.
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (!DOMAIN_PATTERN.test(domain)) throw invalid(ref, `bad registry "${domain}"`);
  if (domain === 'index.docker.io') domain = DEFAULT_REGISTRY;
  if (domain === DEFAULT_REGISTRY && !path.includes('/')) path = `library/${path}`;
  if (path.toLowerCase() !== path) throw invalid(ref, 'the repository name must be lowercase');
  if (!path.split('/').every((component) => PATH_COMPONENT_PATTERN.test(component)))
    throw invalid(ref, `bad repository "${path}"`);
  const repository = `${domain}/${path}`;
  if (repository.length > MAX_NAME_LENGTH) throw invalid(ref, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  if (digest !== undefined) return { domain, path, repository, digest };
  return { domain, path, repository, tag: tag ?? DEFAULT_TAG };
}

/** The reference as a string: `repository:tag` or `repository@digest`. */
export function formatImageRef(ref: ImageRef): string {
  if (ref.digest !== undefined) return `${ref.repository}@${ref.digest}`;
  return `${ref.repository}:${ref.tag ?? DEFAULT_TAG}`;
}

/** `busybox` -> `docker.io/library/busybox:latest`; throws InvalidArgumentError when not a reference. */
export function normalizeImageRef(ref: string): string {
  return formatImageRef(parseImageRef(ref));
}

/** The parsed reference, or undefined when `ref` is not one (an id, a typo). */
export function tryParseImageRef(ref: string): ImageRef | undefined {
  try {
    return parseImageRef(ref);
  } catch (error) {
    if (error instanceof InvalidArgumentError) return undefined;
    throw error;
  }
}

/**
 * What a pull of `ref` records and names: the normalized reference (`repo:tag`, or
 * `repo@digest`, the tag dropped when both are given, as containerd's CRI does) and
 * the registry it names.
 */
export function pullTarget(ref: string): { reference: string; registry: string } {
  const parsed = parseImageRef(ref);
  return {
    reference:
      parsed.digest !== undefined ? `${parsed.repository}@${parsed.digest}` : `${parsed.repository}:${parsed.tag}`,
    registry: parsed.domain,
  };
}
