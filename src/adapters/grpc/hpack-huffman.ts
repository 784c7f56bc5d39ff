import { HpackError } from './hpack-errors.js';

/*
 * HPACK's Huffman code (RFC 7541, Appendix B) is canonical: codes of one length are
 * consecutive and in symbol order, each length's first code following the previous
 * length's last. So the code lengths alone define it. Here they are, symbols 0-255 then
 * EOS (256), each length as a letter: 'A' is 5 bits, 'Z' is 30.
 */
const CODE_LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJB' +
  'KABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRS' +
  'VVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';

const EOS = 256;

/**
 * The decoding trie as flat arrays: node n's children are `next[2n]` and `next[2n+1]`
 * (0 = none; node 0 is the root, never a child); a leaf's symbol is `symbol[n]`, -1 on
 * inner nodes.
 */
interface Trie {
  next: Int32Array;
  symbol: Int16Array;
}

function buildTrie(): Trie {
  const lengths = Array.from({ length: CODE_LENGTHS.length }, (_, i) => CODE_LENGTHS.charCodeAt(i) - 65 + 5);
  const order = lengths.map((_, s) => s).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const next = new Int32Array(2 * 2 * 257);
  const symbol = new Int16Array(2 * 257).fill(-1);
  let nodes = 1;
  let code = 0;
  let length = lengths[order[0]!]!;
  for (const [i, s] of order.entries()) {
    if (i > 0) {
      code = (code + 1) * 2 ** (lengths[s]! - length);
      length = lengths[s]!;
    }
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + (Math.floor(code / 2 ** bit) & 1);
      if (next[slot] === 0) next[slot] = nodes++;
      node = next[slot]!;
    }
    symbol[node] = s;
  }
  return { next, symbol };
}

let trie: Trie | undefined;

/**
 * Decodes a Huffman-coded HPACK string. Refuses what RFC 7541 5.2 calls a decoding
 * error: the EOS symbol inside the string, padding longer than 7 bits, or padding that
 * is not the most significant bits of EOS (all ones).
 */
export function huffmanDecode(input: Buffer): Buffer {
  trie ??= buildTrie();
  const { next, symbol } = trie;
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let written = 0;
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      node = next[2 * node + b]!;
      if (node === 0) throw new HpackError('an invalid Huffman code');
      depth++;
      allOnes &&= b === 1;
      const s = symbol[node]!;
      if (s >= 0) {
        if (s === EOS) throw new HpackError('the EOS symbol inside a Huffman-coded string');
        out[written++] = s;
        node = 0;
        depth = 0;
        allOnes = true;
      }
    }
  }
  if (depth > 7 || !allOnes) throw new HpackError('bad padding after a Huffman-coded string');
  return out.subarray(0, written);
}
