import type { Readable } from 'node:stream';

/*
 * The seam between where image content comes from (a registry, an OCI archive, a
 * `docker save` tar) and where it goes (containerd's content store and snapshots).
 * A pull reads an ImageSource; src/adapters/registry implements it over the OCI
 * distribution API, src/adapters/images/archive-source.ts over a local archive.
 */

/** An OCI content descriptor (also what Docker's schema 2 documents carry). */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface ImageSource {
  /** The normalized reference this source serves, e.g. `docker.io/library/busybox:latest` (or `name@sha256:…`). */
  readonly reference: string;
  /** Where the content comes from, for messages and events: `https://registry-1.docker.io`, `oci-archive:/path`. */
  readonly origin: string;
  /** The top descriptor the reference resolves to (an index, a manifest list, or a manifest), and its bytes, verified. */
  resolve(): Promise<{ descriptor: Descriptor; bytes: Buffer }>;
  /** A small document (manifest, index, config) by descriptor, verified against its digest and size. */
  fetch(descriptor: Descriptor): Promise<Buffer>;
  /**
   * A blob as a stream. The stream is verified while it is read: it errors (and never
   * ends cleanly) when the bytes do not match the descriptor's digest or size.
   */
  blob(descriptor: Descriptor): Promise<Readable>;
}
