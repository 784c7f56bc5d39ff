import { z } from 'zod';
import { AmbiguousIdError, InvalidArgumentError } from './errors.js';

/** A container or sandbox id: 64 lowercase hex characters, as CRI runtimes use. */
export const RESOURCE_ID = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');

/** An event id: a ULID (26 Crockford base-32 characters), unique and sortable by time. */
export const EVENT_ID = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{26}$/, 'must be a ULID');

/** Ids shorter than this are not accepted as prefixes (crictl prints 13 characters). */
export const MIN_ID_PREFIX_LENGTH = 1;

export function isResourceId(value: string): boolean {
  return RESOURCE_ID.safeParse(value).success;
}

/**
 * Resolves a full id or a unique prefix of one among `known` ids, as CRI does for
 * ContainerStatus and friends. Returns undefined when nothing matches; throws when the
 * prefix matches more than one id, so a short prefix never silently picks one of two.
 */
export function resolveIdPrefix(prefix: string, known: Iterable<string>, field = 'id'): string | undefined {
  if (!/^[0-9a-f]{1,64}$/.test(prefix)) {
    throw new InvalidArgumentError(field, `"${prefix}" is not an id or a prefix of one (hex characters expected)`);
  }
  const matches: string[] = [];
  for (const id of known) {
    if (id === prefix) return id;
    if (id.startsWith(prefix)) matches.push(id);
  }
  if (matches.length > 1) throw new AmbiguousIdError(prefix, matches);
  return matches[0];
}

/** Stream names: `container-<id>`, `sandbox-<id>`, `image-<name>`, `node-<node>` (the runtime's own settings). */
export type StreamKind = 'container' | 'sandbox' | 'image' | 'node';

export const STREAM_KINDS: readonly StreamKind[] = ['container', 'sandbox', 'image', 'node'];

export function containerStream(id: string): string {
  return `container-${id}`;
}

export function sandboxStream(id: string): string {
  return `sandbox-${id}`;
}

export function imageStream(name: string): string {
  return `image-${name}`;
}

export function nodeStream(node: string): string {
  return `node-${node}`;
}

/** Splits a stream name into its kind and the id (or image name) it is about. */
export function parseStream(stream: string): { kind: StreamKind; id: string } {
  const dash = stream.indexOf('-');
  const kind = stream.slice(0, dash);
  const id = stream.slice(dash + 1);
  if (dash <= 0 || id.length === 0 || !(STREAM_KINDS as readonly string[]).includes(kind)) {
    throw new InvalidArgumentError('stream', `"${stream}" is not <container|sandbox|image>-<id>`);
  }
  return { kind: kind as StreamKind, id };
}
