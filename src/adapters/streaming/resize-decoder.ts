/** A terminal size as the client sends it on the resize stream (client-go's TerminalSize). */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * Splits the resize stream into sizes: JSON objects one after another, with or without
 * whitespace between them, as Go's json.Encoder writes `{"Width":80,"Height":24}`. Like
 * kubelet's decoder, it stops at the first object that does not parse.
 */
export class ResizeDecoder {
  #text = '';
  #broken = false;

  push(chunk: Buffer | string): TerminalSize[] {
    if (this.#broken) return [];
    this.#text += chunk.toString();
    const sizes: TerminalSize[] = [];
    for (;;) {
      const end = objectEnd(this.#text);
      if (end < 0) break;
      const object = this.#text.slice(0, end).trim();
      this.#text = this.#text.slice(end);
      const size = parseSize(object);
      if (!size) {
        this.#broken = true;
        break;
      }
      sizes.push(size);
    }
    if (this.#text.length > 4096) this.#broken = true;
    return sizes;
  }
}

/** The index just after the first complete top-level JSON object, or -1. */
function objectEnd(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}

function parseSize(object: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(object);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  // Go's decoder matches field names case-insensitively.
  const fields = new Map(Object.entries(value).map(([k, v]) => [k.toLowerCase(), v]));
  const width = Number(fields.get('width') ?? 0);
  const height = Number(fields.get('height') ?? 0);
  const valid = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffff;
  return valid(width) && valid(height) ? { width, height } : undefined;
}
