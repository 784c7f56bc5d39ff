import type { RegistryAuth } from '../../commands/ports.js';
import { AttemptFailure, readBody, readErrorBody, type HttpRequest, type HttpTransport } from './registry-http.js';

/*
 * Answers a registry's 401: Basic with the given credentials, or Bearer by asking the
 * challenge's realm for a token (the distribution token spec: GET with Basic credentials
 * or anonymously; POST a refresh_token grant when kubelet passed an identity token; a
 * registry token is used as the bearer token itself). Headers are cached per host and
 * scope, so one token serves every blob of a pull until it expires.
 */

/** CRI's AuthConfig, as kubelet sends it with PullImage (the port's type). */
export type { RegistryAuth } from '../../commands/ports.js';

/** What the token service says when expires_in is missing (the spec's default). */
export const DEFAULT_TOKEN_LIFETIME_S = 60;
/** A token is renewed this long before it expires, so a request does not race its expiry. */
export const DEFAULT_TOKEN_RENEW_MARGIN_MS = 10_000;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const CLIENT_ID = 'cri-ledger';

export interface AuthChallenge {
  /** Lower case: `basic`, `bearer`. */
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header: one or more `Scheme k="v", k2=v2` challenges. */
export function parseChallenges(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  const token = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*)))?\s*,?/y;
  let current: AuthChallenge | undefined;
  while (token.lastIndex < header.length) {
    const start = token.lastIndex;
    const m = token.exec(header);
    if (!m || token.lastIndex === start) break;
    const [, name, assignment, quoted, bare] = m;
    if (assignment === undefined) {
      // A name without `=` is a scheme and starts a challenge; its params follow.
      current = { scheme: name!.toLowerCase(), params: {} };
      challenges.push(current);
    } else if (current) {
      current.params[name!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : (bare ?? '');
    }
  }
  return challenges;
}

interface Cached {
  header: string;
  expiresAt: number;
}

function credentials(auth: RegistryAuth | undefined): { username: string; password: string } | undefined {
  if (auth?.username) return { username: auth.username, password: auth.password ?? '' };
  if (auth?.auth) {
    const decoded = Buffer.from(auth.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

export class RegistryAuthorizer {
  private readonly cache = new Map<string, Cached>();
  private readonly pending = new Map<string, Promise<Cached>>();

  constructor(
    private readonly auth: RegistryAuth | undefined,
    private readonly transport: HttpTransport,
    private readonly now: () => number = Date.now,
  ) {}

  /** The header to send up front to `origin` for `scope`, when a fresh one is known. */
  cached(origin: string, scope: string): string | undefined {
    const hit = this.cache.get(`${origin} ${scope}`);
    return hit && hit.expiresAt > this.now() ? hit.header : undefined;
  }

  /** Drops a header the registry refused, so the next request asks anew. */
  forget(origin: string, scope: string): void {
    this.cache.delete(`${origin} ${scope}`);
  }

  /** The Authorization header answering `challenges`; concurrent callers share one token request. */
  async authorize(
    origin: string,
    challenges: AuthChallenge[],
    scope: string,
    tls: HttpRequest['tls'],
  ): Promise<string> {
    const key = `${origin} ${scope}`;
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.answer(challenges, scope, tls).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    const answer = await pending;
    this.cache.set(key, answer);
    return answer.header;
  }

  private async answer(challenges: AuthChallenge[], scope: string, tls: HttpRequest['tls']): Promise<Cached> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    const creds = credentials(this.auth);
    if (bearer) {
      if (this.auth?.registryToken) return { header: `Bearer ${this.auth.registryToken}`, expiresAt: Infinity };
      return this.fetchToken(bearer, scope, tls);
    }
    if (basic) {
      if (!creds) throw new AttemptFailure('unauthenticated', '401, Basic auth asked and no credentials given');
      return {
        header: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`,
        expiresAt: Infinity,
      };
    }
    throw new AttemptFailure(
      'unauthenticated',
      `401 with no supported challenge (${challenges.map((c) => c.scheme).join(', ') || 'none'})`,
    );
  }

  private async fetchToken(challenge: AuthChallenge, ourScope: string, tls: HttpRequest['tls']): Promise<Cached> {
    const realm = challenge.params.realm;
    if (!realm) throw new AttemptFailure('protocol', '401 Bearer challenge without a realm');
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new AttemptFailure('protocol', `401 Bearer challenge with a bad realm "${realm}"`);
    }
    const service = challenge.params.service;
    const scope = challenge.params.scope ?? ourScope;
    const creds = credentials(this.auth);
    const request: HttpRequest = {
      method: 'GET',
      url,
      headers: { 'user-agent': CLIENT_ID, accept: 'application/json' },
      tls,
    };
    if (this.auth?.identityToken) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: this.auth.identityToken,
        client_id: CLIENT_ID,
        scope,
      });
      if (service) form.set('service', service);
      request.method = 'POST';
      request.body = form.toString();
      request.headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scope.split(' ')) url.searchParams.append('scope', s);
      if (creds)
        request.headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    const where = `token service ${url.origin}${url.pathname}`;
    let res;
    try {
      res = await this.transport(request);
    } catch (error) {
      throw new AttemptFailure('unavailable', `${where}: ${(error as Error).message}`);
    }
    if (res.status !== 200) {
      const detail = (await readErrorBody(res.body)).slice(0, 200).trim();
      const outcome = `${where} answered ${res.status}${detail ? ` ${detail}` : ''}`;
      if (res.status === 401) throw new AttemptFailure('unauthenticated', outcome);
      if (res.status === 403) throw new AttemptFailure('denied', outcome);
      throw new AttemptFailure(res.status >= 500 || res.status === 429 ? 'unavailable' : 'protocol', outcome);
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse((await readBody(res.body, MAX_TOKEN_RESPONSE_BYTES)).toString('utf8')) as typeof body;
    } catch (error) {
      throw new AttemptFailure('protocol', `${where} sent no JSON: ${(error as Error).message}`);
    }
    const token = body.access_token || body.token;
    if (!token) throw new AttemptFailure('protocol', `${where} sent no token`);
    const lifetimeMs =
      (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_LIFETIME_S) * 1000;
    return {
      header: `Bearer ${token}`,
      expiresAt: this.now() + lifetimeMs - Math.min(DEFAULT_TOKEN_RENEW_MARGIN_MS, lifetimeMs / 2),
    };
  }
}
