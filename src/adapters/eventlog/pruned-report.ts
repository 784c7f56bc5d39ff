import type { Tombstone, PruneSummary } from './pruned-index.js';

/** What a reader asks retention's record about. */
export interface PrunedQuery {
  /** Count the removed seqs in [fromSeq, toSeq] (defaults: the whole log). */
  fromSeq?: number;
  toSeq?: number;
  /** Streams whose tombstones to return. */
  streams?: readonly string[];
  /** Full CRI names whose pruned streams' tombstones to return. */
  names?: readonly string[];
}

/** The answer, the same from a stopped log, the running service's socket, and its Pruned RPC. */
export interface PrunedReport {
  /** False when retention never removed anything from this log. */
  pruned: boolean;
  events: number;
  streams: number;
  bytes: number;
  firstPrunedAt: string;
  lastPrunedAt: string;
  eventsInRange: number;
  firstInRange: number;
  lastInRange: number;
  streamsAsked: Tombstone[];
  /** The running service's policy (0 when off or unknown). */
  maxAgeMs: number;
  maxBytes: number;
  /** False for a stopped service's log: its policy is not recorded. */
  policyKnown: boolean;
}

/** The parts of the LevelDB log the report reads. */
export interface PrunedRecord {
  head(): number;
  prunedSummary(): PruneSummary | undefined;
  prunedWithin(fromSeq: number, toSeq: number): { ranges: Array<readonly [number, number]>; events: number };
  tombstone(stream: string): Promise<Tombstone | undefined>;
  tombstonesNamed(names: readonly string[]): Promise<Tombstone[]>;
}

export async function prunedReport(
  log: PrunedRecord,
  query: PrunedQuery,
  policy?: { maxAgeMs: number; maxBytes: number },
): Promise<PrunedReport> {
  const summary = log.prunedSummary();
  const report: PrunedReport = {
    pruned: summary !== undefined,
    events: summary?.events ?? 0,
    streams: summary?.streams ?? 0,
    bytes: summary?.bytes ?? 0,
    firstPrunedAt: summary?.firstPrunedAt ?? '',
    lastPrunedAt: summary?.lastPrunedAt ?? '',
    eventsInRange: 0,
    firstInRange: 0,
    lastInRange: 0,
    streamsAsked: [],
    maxAgeMs: policy?.maxAgeMs ?? 0,
    maxBytes: policy?.maxBytes ?? 0,
    policyKnown: policy !== undefined,
  };
  if (!summary) return report;
  const within = log.prunedWithin(Math.max(1, query.fromSeq ?? 1), query.toSeq || log.head());
  report.eventsInRange = within.events;
  report.firstInRange = within.ranges[0]?.[0] ?? 0;
  report.lastInRange = within.ranges.at(-1)?.[1] ?? 0;
  for (const stream of query.streams ?? []) {
    const t = await log.tombstone(stream);
    if (t) report.streamsAsked.push(t);
  }
  if (query.names && query.names.length > 0) {
    const seen = new Set(report.streamsAsked.map((t) => t.stream));
    for (const t of await log.tombstonesNamed(query.names)) if (!seen.has(t.stream)) report.streamsAsked.push(t);
  }
  return report;
}
