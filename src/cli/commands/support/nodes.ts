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

/** Refuses a source that reads several nodes, for commands that fold one node's log into projections. */
export function requireOneNode(source: { manyNodes?: boolean }, command: string): void {
  if (source.manyNodes) {
    throw new InvalidArgumentError('--node', `${command} folds one node's log: name one node, not a list or '*'`);
  }
}
