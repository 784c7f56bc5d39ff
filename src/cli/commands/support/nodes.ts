import { InvalidArgumentError } from '../../../domain/errors.js';

/** Refuses a reference that names streams on several nodes: which one is meant is not for the CLI to guess. */
export function onOneNode(ref: string, matches: ReadonlyArray<{ node?: string }>): void {
  const nodes = [...new Set(matches.flatMap((k) => (k.node === undefined ? [] : [k.node])))].sort();
  if (nodes.length > 1) {
    throw new InvalidArgumentError(
      'ref',
      `"${ref}" is on several nodes (${nodes.join(', ')}): pass --node with one of them`,
    );
  }
}
