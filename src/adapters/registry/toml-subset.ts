import { HostsConfigError } from './registry-errors.js';

/*
 * The part of TOML that containerd's hosts.toml files use: `key = value` pairs, `[a."b"]`
 * table headers, basic and literal strings, booleans, integers and (multi-line) arrays,
 * `#` comments. Anything else (inline tables, multi-line strings, dates, arrays of
 * tables) is refused with the file and line, never half-read.
 */

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

const BARE_KEY = /[A-Za-z0-9_-]/;
const ESCAPES: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };

class Parser {
  private pos = 0;
  /** Tables opened by a header; a second header for one is an error, as in TOML. */
  private readonly defined = new Set<TomlTable>();

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  parse(): TomlTable {
    const root: TomlTable = {};
    let current = root;
    for (;;) {
      this.skipBlank(true);
      if (this.pos >= this.text.length) return root;
      if (this.peek() === '[') {
        if (this.text[this.pos + 1] === '[') this.fail('arrays of tables ([[...]]) are not supported');
        this.pos++;
        const keys = this.key();
        this.expect(']');
        current = this.table(root, keys, true);
      } else {
        const keys = this.key();
        this.expect('=');
        this.skipBlank(false);
        const value = this.value();
        const parent = this.table(current, keys.slice(0, -1), false);
        const last = keys[keys.length - 1]!;
        if (Object.hasOwn(parent, last)) this.fail(`"${keys.join('.')}" is set twice`);
        parent[last] = value;
      }
      this.endOfLine();
    }
  }

  private fail(detail: string): never {
    const line = this.text.slice(0, this.pos).split('\n').length;
    throw new HostsConfigError(this.file, `line ${line}: ${detail}`);
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  /** Skips spaces and tabs, and with `lines` also newlines and comments. */
  private skipBlank(lines: boolean): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t') this.pos++;
      else if (lines && (c === '\n' || c === '\r')) this.pos++;
      else if (lines && c === '#') this.skipComment();
      else return;
    }
  }

  private skipComment(): void {
    while (this.pos < this.text.length && this.peek() !== '\n') this.pos++;
  }

  private expect(c: string): void {
    this.skipBlank(false);
    if (this.peek() !== c)
      this.fail(`expected "${c}"${this.peek() === undefined ? ' before the end' : ` at "${this.peek()}"`}`);
    this.pos++;
  }

  private endOfLine(): void {
    this.skipBlank(false);
    if (this.peek() === '#') this.skipComment();
    if (this.peek() === '\r') this.pos++;
    if (this.pos < this.text.length && this.peek() !== '\n') this.fail(`unexpected "${this.peek()}" after the value`);
  }

  private key(): string[] {
    const keys: string[] = [];
    for (;;) {
      this.skipBlank(false);
      const c = this.peek();
      if (c === '"') keys.push(this.basicString());
      else if (c === "'") keys.push(this.literalString());
      else {
        const start = this.pos;
        while (this.pos < this.text.length && BARE_KEY.test(this.peek()!)) this.pos++;
        if (this.pos === start) this.fail('expected a key');
        keys.push(this.text.slice(start, this.pos));
      }
      this.skipBlank(false);
      if (this.peek() !== '.') return keys;
      this.pos++;
    }
  }

  /** The table at `keys` under `from`, created when missing. */
  private table(from: TomlTable, keys: string[], header: boolean): TomlTable {
    let t = from;
    for (const k of keys) {
      const next = t[k];
      if (next === undefined) t = t[k] = {};
      else if (typeof next === 'object' && !Array.isArray(next)) t = next;
      else this.fail(`"${keys.join('.')}" is a value, not a table`);
    }
    if (header) {
      if (this.defined.has(t)) this.fail(`table [${keys.join('.')}] is defined twice`);
      this.defined.add(t);
    }
    return t;
  }

  private value(): TomlValue {
    const c = this.peek();
    if (c === '"') return this.basicString();
    if (c === "'") return this.literalString();
    if (c === '[') return this.array();
    if (c === '{') this.fail('inline tables are not supported; use a [table] header');
    const rest = this.text.slice(this.pos);
    const word = /^(true|false|[+-]?[0-9](?:_?[0-9])*)(?=[\s,\]#]|$)/.exec(rest);
    if (!word)
      this.fail(`unsupported value "${rest.split(/[\s,\]]/)[0]}" (strings, booleans, integers and arrays only)`);
    this.pos += word[1]!.length;
    if (word[1] === 'true') return true;
    if (word[1] === 'false') return false;
    return Number(word[1]!.replace(/_/g, ''));
  }

  private basicString(): string {
    if (this.text.startsWith('"""', this.pos)) this.fail('multi-line strings are not supported');
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '\n') this.fail('unterminated string');
      this.pos++;
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.peek();
      this.pos++;
      if (e !== undefined && ESCAPES[e] !== undefined) out += ESCAPES[e];
      else if (e === 'u' || e === 'U') {
        const len = e === 'u' ? 4 : 8;
        const hex = this.text.slice(this.pos, this.pos + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) this.fail(`bad \\${e} escape`);
        out += String.fromCodePoint(parseInt(hex, 16));
        this.pos += len;
      } else this.fail(`bad escape "\\${e ?? ''}"`);
    }
  }

  private literalString(): string {
    if (this.text.startsWith("'''", this.pos)) this.fail('multi-line strings are not supported');
    const end = this.text.indexOf("'", this.pos + 1);
    const newline = this.text.indexOf('\n', this.pos + 1);
    if (end === -1 || (newline !== -1 && newline < end)) this.fail('unterminated string');
    const s = this.text.slice(this.pos + 1, end);
    this.pos = end + 1;
    return s;
  }

  private array(): TomlValue[] {
    this.pos++;
    const items: TomlValue[] = [];
    for (;;) {
      this.skipBlank(true);
      if (this.peek() === ']') {
        this.pos++;
        return items;
      }
      items.push(this.value());
      this.skipBlank(true);
      if (this.peek() === ',') this.pos++;
      else if (this.peek() !== ']') this.fail('expected "," or "]" in the array');
    }
  }
}

/** Parses `text` (from `file`, for messages); throws HostsConfigError naming the line. */
export function parseTomlSubset(text: string, file: string): TomlTable {
  return new Parser(text.replace(/^\uFEFF/, ''), file).parse();
}
