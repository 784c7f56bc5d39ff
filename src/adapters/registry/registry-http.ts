import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';

/*
 * The one HTTP call the registry client makes, as a port: tests can count or fake it,
 * and the default speaks node:http(s) directly because per-host TLS settings (a
 * private CA, skip_verify) cannot be given to the built-in fetch without undici's Agent.
 */

/** How long to wait for a connection and the response headers; a body that then streams slowly is not cut off. */
export const DEFAULT_REGISTRY_RESPONSE_TIMEOUT_MS = 30_000;

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: string;
  tls?: { skipVerify: boolean; ca: readonly Buffer[] };
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined by ", ". */
  headers: Record<string, string | undefined>;
  /** Must be read or destroyed. */
  body: Readable;
}

/** Why one host could not serve a request; the caller records it as that host's outcome. */
export class AttemptFailure extends Error {
  constructor(
    readonly kind: 'unauthenticated' | 'denied' | 'unavailable' | 'protocol',
    readonly outcome: string,
  ) {
    super(outcome);
  }
}

/** Sends one request, never follows redirects; rejects only when no response arrives (refused, DNS, TLS, timeout). */
export type HttpTransport = (request: HttpRequest) => Promise<HttpResponse>;

export function nodeHttpTransport(timeoutMs = DEFAULT_REGISTRY_RESPONSE_TIMEOUT_MS): HttpTransport {
  return (request) =>
    new Promise((resolve, reject) => {
      const options: https.RequestOptions = { method: request.method, headers: request.headers, timeout: timeoutMs };
      if (request.url.protocol === 'https:' && request.tls) {
        options.rejectUnauthorized = !request.tls.skipVerify;
        // `ca` replaces the system roots in node; a registry's private CA is in addition to them.
        if (request.tls.ca.length > 0)
          options.ca = [...rootCertificates, ...request.tls.ca.map((b) => b.toString('utf8'))];
      }
      const send = request.url.protocol === 'https:' ? https.request : http.request;
      const req = send(request.url, options, (res) => {
        req.setTimeout(0);
        const headers: Record<string, string | undefined> = {};
        for (const [name, value] of Object.entries(res.headers))
          headers[name] = Array.isArray(value) ? value.join(', ') : value;
        resolve({ status: res.statusCode ?? 0, headers, body: res });
      });
      req.on('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(request.body);
    });
}

/** Reads a whole (small) body; fails past `limit` bytes instead of buffering without bound. */
export async function readBody(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new Error(`body is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads what is left of an error body for its message, at most 64 KiB, never throwing. */
export async function readErrorBody(body: Readable): Promise<string> {
  try {
    return (await readBody(body, 64 * 1024)).toString('utf8');
  } catch {
    return '';
  }
}
