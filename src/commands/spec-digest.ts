/** `sha256:` of a spec's JSON, with Web Crypto (a global: the core imports no node modules). */
export async function specDigest(spec: Record<string, unknown>): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(spec))));
  return `sha256:${[...hash].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}
