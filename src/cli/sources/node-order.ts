import type { SourcedEvent } from './event-source.js';

/** `--node` for a NATS read: one node, a comma list, or `*` for every node the stream holds. */
export type NodeSpec = { kind: 'all' } | { kind: 'list'; nodes: string[] };

/** Parses `--node`: `*`, `a`, or `a,b,c` (blanks dropped, duplicates kept once). */
export function parseNodeSpec(text: string): NodeSpec {
  if (text.trim() === '*') return { kind: 'all' };
  const nodes = [
    ...new Set(
      text
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n.length > 0),
    ),
  ];
  return { kind: 'list', nodes };
}

/**
 * Puts events read from JetStream into the order their logs hold them: once each (a
 * node's seq names one event, so a copy the dedupe window missed is dropped), in seq
 * order per node (an event re-sent after a failed publish lands up to one relay window
 * late in the stream), and, across nodes, by the time each was recorded (ties by node,
 * then seq). Each node's log is time-ordered along seq, so this is a merge, not a re-sort.
 */
export function orderAcrossNodes(
  events: Iterable<SourcedEvent & { node: string }>,
): Array<SourcedEvent & { node: string }> {
  const byNode = new Map<string, Map<number, SourcedEvent & { node: string }>>();
  for (const e of events) {
    let seqs = byNode.get(e.node);
    if (!seqs) byNode.set(e.node, (seqs = new Map()));
    if (!seqs.has(e.seq)) seqs.set(e.seq, e);
  }
  const lanes = [...byNode.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, seqs]) => [...seqs.values()].sort((a, b) => a.seq - b.seq));
  const next = lanes.map(() => 0);
  const out: Array<SourcedEvent & { node: string }> = [];
  for (;;) {
    let pick = -1;
    let pickAt = Number.POSITIVE_INFINITY;
    for (let i = 0; i < lanes.length; i++) {
      const e = lanes[i]![next[i]!];
      if (e === undefined) continue;
      const at = Date.parse(e.event.at);
      if (at < pickAt) {
        pick = i;
        pickAt = at;
      }
    }
    if (pick < 0) return out;
    out.push(lanes[pick]![next[pick]!]!);
    next[pick]!++;
  }
}
