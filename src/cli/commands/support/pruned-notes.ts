import { CriLedgerError } from '../../../domain/errors.js';
import type { EventSource, PrunedReport } from '../../sources/event-source.js';
import { shortId } from './summary.js';

/*
 * What `events`, `timeline` and `explain` say when retention removed part of what they
 * were asked for from the node's local log: how much, when, and that NATS (--nats) holds
 * it, since retention only removes what the relay has published when one is configured.
 */

const WHERE =
  'read it from NATS: add --nats (and, off the node, --node <node>); the relay published every removed event before it went, when one is configured';

/** The streams a full id may name. */
function streamsOf(ref: string): string[] {
  return /^[0-9a-f]{64}$/.test(ref) ? [`container-${ref}`, `sandbox-${ref}`] : [];
}

/**
 * A container or sandbox whose beginning (its reservation) retention removed while the
 * rest of its stream is still held: what `timeline` needs to show the rest.
 */
export async function partlyPruned(
  source: EventSource,
  ref: string,
): Promise<{ kind: 'container' | 'sandbox'; id: string; stream: string; name: string; seq: number } | undefined> {
  const t = (await prunedRecord(source, { streams: streamsOf(ref), names: [ref] }))?.streamsAsked.at(-1);
  if (!t || t.complete) return undefined;
  const kind = t.stream.startsWith('sandbox-') ? 'sandbox' : 'container';
  const id = t.stream.slice(t.stream.indexOf('-') + 1);
  return { kind, id, stream: t.stream, name: t.name ?? '(removed by retention)', seq: t.firstSeq };
}

/** The container or sandbox is not in the local log any more: retention removed it. */
export class PrunedFromLogError extends CriLedgerError {
  constructor(message: string) {
    super(message);
    this.name = 'PrunedFromLogError';
  }
}

/** Retention's record, or undefined when the source has none (NATS) or nothing was ever removed. */
export async function prunedRecord(
  source: EventSource,
  query: Parameters<NonNullable<EventSource['pruned']>>[0],
): Promise<PrunedReport | undefined> {
  const report = await source.pruned?.(query);
  return report?.pruned ? report : undefined;
}

/** `events`: a line when the range read had events removed by retention; undefined when none. */
export function rangeNote(report: PrunedReport | undefined): string | undefined {
  if (!report || report.eventsInRange === 0) return undefined;
  return (
    `note: the local log no longer holds ${report.eventsInRange} events between seq ${report.firstInRange} and ` +
    `${report.lastInRange}: retention removed ended containers' and sandboxes' events (last at ${report.lastPrunedAt}); ` +
    WHERE
  );
}

/** `timeline`, `explain`: the target's stream lacks its beginning (or all of it). */
export function streamNote(kind: string, id: string, report: PrunedReport | undefined): string | undefined {
  const t = report?.streamsAsked[0];
  if (!t) return undefined;
  const what = t.complete
    ? `all ${t.events} of its events (`
    : `its first ${t.events} events (versions 1..${t.version}, `;
  return (
    `note: the local log no longer holds the beginning of ${kind} ${shortId(id)}: retention removed ${what}` +
    `seq ${t.firstSeq}..${t.lastSeq}, recorded ${t.firstAt}..${t.lastAt}) at ${t.prunedAt}; ${WHERE}`
  );
}

/**
 * The error for a reference the local log does not resolve, when retention has removed
 * streams: a full id it removed is named precisely; anything else may be among them.
 */
export async function notInLocalLog(source: EventSource, ref: string): Promise<PrunedFromLogError | undefined> {
  const report = await prunedRecord(source, { streams: streamsOf(ref), names: [ref] });
  if (!report) return undefined;
  // A name several removed holders had: the newest, as for names the log still holds.
  const t = report.streamsAsked.at(-1);
  if (t) {
    const kind = t.stream.startsWith('sandbox-') ? 'sandbox' : 'container';
    const id = t.stream.slice(t.stream.indexOf('-') + 1);
    const named = t.name ? ` (${t.name})` : '';
    if (!t.complete)
      return new PrunedFromLogError(
        `the local log no longer holds the beginning of ${kind} ${id}${named}: retention removed its first ` +
          `${t.events} events (versions 1..${t.version}, seq ${t.firstSeq}..${t.lastSeq}) at ${t.prunedAt}, its ` +
          `reservation with them; \`cri-ledger timeline ${id}\` shows the rest; ${WHERE}`,
      );
    return new PrunedFromLogError(
      `${kind} ${id}${named} ended and the local log no longer holds it: retention removed its ` +
        `${t.events} events (seq ${t.firstSeq}..${t.lastSeq}, recorded ${t.firstAt}..${t.lastAt}) at ${t.prunedAt}; ${WHERE}`,
    );
  }
  return new PrunedFromLogError(
    `container or sandbox "${ref}" not found in the local log, which retention has pruned: ${report.events} events of ` +
      `${report.streams} ended containers and sandboxes removed from ${report.firstPrunedAt} to ${report.lastPrunedAt}; ` +
      `if it ended before then, ${WHERE}`,
  );
}
