import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Descriptor } from '../images/image-source.js';
import { ContentVerificationError } from './registry-errors.js';

/*
 * A pass-through that checks size and digest as the bytes go by. It errors as soon as
 * more bytes than the descriptor's size arrive, and at the end when fewer did or the
 * digest differs; it only ends cleanly for content that matches.
 */

const ALGORITHMS: Record<string, string> = { sha256: 'sha256', sha512: 'sha512' };

/** The node hash for a digest's algorithm; undefined when unsupported. */
export function digestHash(digest: string): Hash | undefined {
  const algorithm = ALGORITHMS[digest.slice(0, digest.indexOf(':'))];
  return algorithm ? createHash(algorithm) : undefined;
}

/** `bytes`' digest in the algorithm of `like`; undefined when that algorithm is unsupported. */
export function digestOf(bytes: Buffer, like: string): string | undefined {
  const hash = digestHash(like);
  return hash && `${like.slice(0, like.indexOf(':'))}:${hash.update(bytes).digest('hex')}`;
}

export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private seen = 0;

  constructor(
    private readonly descriptor: Descriptor,
    private readonly reference: string,
  ) {
    super();
    const hash = digestHash(descriptor.digest);
    if (!hash) throw new ContentVerificationError(reference, descriptor.digest, 'unsupported digest algorithm');
    this.hash = hash;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.descriptor.size) {
      callback(
        new ContentVerificationError(
          this.reference,
          this.descriptor.digest,
          `more than the expected ${this.descriptor.size} bytes`,
        ),
      );
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.seen !== this.descriptor.size) {
      callback(
        new ContentVerificationError(
          this.reference,
          this.descriptor.digest,
          `got ${this.seen} bytes, expected ${this.descriptor.size}`,
        ),
      );
      return;
    }
    const actual = `${this.descriptor.digest.slice(0, this.descriptor.digest.indexOf(':'))}:${this.hash.digest('hex')}`;
    if (actual !== this.descriptor.digest) {
      callback(new ContentVerificationError(this.reference, this.descriptor.digest, `the bytes hash to ${actual}`));
      return;
    }
    callback();
  }
}
