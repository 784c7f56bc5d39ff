import { randomBytes } from 'node:crypto';
import type { SessionKind } from './contracts.js';
import { TOKEN_BYTES } from './streaming-options.js';

interface Entry<P> {
  readonly kind: SessionKind;
  readonly payload: P;
  readonly expiresAt: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * Single-use session tokens: `issue` hands out 128 random bits (base64url); `take`
 * returns the payload once, for the kind it was issued for, before it expires. An
 * expired entry is dropped by its own timer, so an unused token holds no memory.
 */
export class TokenRegistry<P> {
  readonly #entries = new Map<string, Entry<P>>();

  constructor(private readonly ttlMs: number) {}

  issue(kind: SessionKind, payload: P): string {
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const timer = setTimeout(() => this.#entries.delete(token), this.ttlMs);
    timer.unref();
    this.#entries.set(token, { kind, payload, expiresAt: Date.now() + this.ttlMs, timer });
    return token;
  }

  /** The payload, once; undefined for an unknown, used, expired or other-kind token. */
  take(kind: string, token: string): P | undefined {
    const entry = this.#entries.get(token);
    if (!entry || entry.kind !== kind) return undefined;
    this.#entries.delete(token);
    clearTimeout(entry.timer);
    // A timer may fire late under load; the deadline is what counts.
    return Date.now() <= entry.expiresAt ? entry.payload : undefined;
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    for (const entry of this.#entries.values()) clearTimeout(entry.timer);
    this.#entries.clear();
  }
}
