import { InvalidArgumentError, NotFoundError } from '../../../domain/errors.js';
import type { LedgerEvent } from '../../../domain/events.js';
import { parseStream, resolveIdPrefix } from '../../../domain/ids.js';
import { sessionSentences, sessionStories } from './sessions.js';
import { shortId } from './summary.js';
import { formatDuration } from './time.js';

/*
 * `cri-ledger explain`: what the log says about one container or sandbox, in plain
 * words. Pure: the command reads the events, these functions turn them into sentences,
 * so each sentence can be checked against generated events.
 */

/** The event types `explain` scans the whole log for: reservations and how each ended. */
export const RESERVATION_TYPES = [
  'NameReserved',
  'SandboxReserved',
  'ContainerCreated',
  'SandboxReady',
  'Compensated',
  'ContainerRemoved',
  'SandboxRemoved',
] as const;

/** One container or sandbox the log has reserved a name for, and what became of it. */
export interface Reservation {
  kind: 'container' | 'sandbox';
  id: string;
  stream: string;
  /** The full CRI name, and the metadata name it starts with. */
  name: string;
  shortName: string;
  reservedAt: string;
  reservedSeq: number;
  correlationId: string;
  createdAt?: string;
  /** How the name was let go, if it was. */
  released?: { how: 'removed' | 'compensated'; at: string; failedStep?: string };
}

/** Folds the reservation-type events (in seq order) into one Reservation per stream, oldest first. */
export function reservations(events: Iterable<LedgerEvent>): Reservation[] {
  const byStream = new Map<string, Reservation>();
  for (const event of events) {
    if (event.type === 'NameReserved' || event.type === 'SandboxReserved') {
      const { kind, id } = parseStream(event.stream);
      if ((kind !== 'container' && kind !== 'sandbox') || byStream.has(event.stream)) continue;
      byStream.set(event.stream, {
        kind,
        id,
        stream: event.stream,
        name: event.data.name,
        shortName: event.data.metadata.name,
        reservedAt: event.at,
        reservedSeq: event.seq,
        correlationId: event.correlationId,
      });
      continue;
    }
    const r = byStream.get(event.stream);
    if (!r) continue;
    if (event.type === 'ContainerCreated' || event.type === 'SandboxReady') r.createdAt = event.at;
    else if (event.type === 'ContainerRemoved' || event.type === 'SandboxRemoved')
      r.released ??= { how: 'removed', at: event.at };
    else if (event.type === 'Compensated')
      r.released ??= { how: 'compensated', at: event.at, failedStep: event.data.failedStep };
  }
  return [...byStream.values()].sort((a, b) => a.reservedSeq - b.reservedSeq);
}

/** What a reference names, and notes for stderr (other holders of a reused name). */
export interface Resolved {
  target: Reservation;
  notes: string[];
}

/**
 * Resolves a full CRI name, a full id, a unique id prefix, or a metadata name (`app`)
 * that only one full name has. A name several attempts reserved resolves to the newest.
 */
export function resolveReference(known: readonly Reservation[], ref: string): Resolved {
  const newestOf = (matches: Reservation[]): Resolved => {
    const target = matches[matches.length - 1]!;
    const others = matches.slice(0, -1);
    const notes =
      others.length === 0
        ? []
        : [
            `note: ${target.name} was also reserved by ${others.map((o) => shortId(o.id)).join(', ')}; explaining the newest, ${shortId(target.id)} (pass an id to see another)`,
          ];
    return { target, notes };
  };
  const byName = known.filter((k) => k.name === ref);
  if (byName.length > 0) return newestOf(byName);
  if (/^[0-9a-f]+$/.test(ref)) {
    const id = resolveIdPrefix(ref, new Set(known.map((k) => k.id)), 'ref');
    const found = id === undefined ? undefined : known.find((k) => k.id === id);
    if (found) return { target: found, notes: [] };
  }
  const byShort = known.filter((k) => k.shortName === ref);
  const fullNames = [...new Set(byShort.map((k) => k.name))];
  if (fullNames.length > 1) {
    throw new InvalidArgumentError(
      'ref',
      `"${ref}" is the name of ${fullNames.length} containers or sandboxes (${fullNames.join(', ')}); pass the full name or an id`,
    );
  }
  if (byShort.length > 0) return newestOf(byShort);
  throw new NotFoundError('container or sandbox', ref);
}

export interface ExplainInput {
  target: Reservation;
  /** Every event of the target's stream, in seq order. */
  events: readonly LedgerEvent[];
  /** Every reservation the log knows (for who else held the name). */
  known: readonly Reservation[];
  /** Where the events came from (`socket ...`, `db ...`, `nats ...`). */
  source: string;
  /** Now, ms since the epoch: ages of what is still in flight are measured to it. */
  nowMs: number;
}

const ms = (iso: string): number => Date.parse(iso);
const since = (from: string, to: string): string => formatDuration(Math.max(0, ms(to) - ms(from)));
const quoted = (text: string): string => JSON.stringify(text);

/** The explanation, one sentence a line. */
export function explain(input: ExplainInput): string[] {
  const { target, events } = input;
  const noun = target.kind;
  const out: string[] = [`${noun} ${target.id}`];
  const reserved = events.find((e) => e.type === 'NameReserved' || e.type === 'SandboxReserved');
  const created = events.find((e) => e.type === 'ContainerCreated' || e.type === 'SandboxReady');
  const compensated = events.find((e): e is LedgerEvent<'Compensated'> => e.type === 'Compensated');
  const removed = events.find((e) => e.type === 'ContainerRemoved' || e.type === 'SandboxRemoved');

  out.push(nameSentence(input, created));
  if (reserved && created) {
    out.push(
      `created by request ${reserved.correlationId} at ${created.at}, ${since(reserved.at, created.at)} after the name was reserved (seq ${reserved.seq}..${created.seq}).`,
    );
  }
  for (const line of stallSentences(events, input.nowMs)) out.push(line);
  if (compensated) out.push(...compensationSentences(compensated));
  if (!created && !compensated && !removed) {
    const reached = [...events].reverse().find((e) => e.type !== 'OperationStalled');
    const operation = noun === 'container' ? 'CreateContainer' : 'RunPodSandbox';
    const started = reserved?.at ?? target.reservedAt;
    out.push(
      `in flight: ${operation} (request ${target.correlationId}) began at ${started} and has not ended; the last step recorded is ${reached?.type ?? 'none'}` +
        `${reached ? ` at ${reached.at}` : ''}; age ${since(started, new Date(input.nowMs).toISOString())}.`,
    );
  }
  const retries = events.filter((e): e is LedgerEvent<'RetryServed'> => e.type === 'RetryServed');
  if (retries.length > 0) {
    const last = retries[retries.length - 1]!.at;
    out.push(
      retries.length === 1
        ? `retried once with the same request; served from the ledger at ${last}, nothing created twice.`
        : `retried ${retries.length} times with the same request; served from the ledger each time (the last at ${last}), nothing created twice.`,
    );
  }
  out.push(...deliverySentences(events));
  out.push(...lifecycleSentences(events));
  out.push(...sessionSentences(sessionStories(events), input.nowMs));
  if (removed) out.push(removalSentence(removed as LedgerEvent<'ContainerRemoved'> | LedgerEvent<'SandboxRemoved'>));
  out.push(
    `source: ${input.source}, ${events.length} events (seq ${events[0]?.seq ?? 0}..${events[events.length - 1]?.seq ?? 0}).`,
  );
  return out;
}

function nameSentence(input: ExplainInput, created: LedgerEvent | undefined): string {
  const { target, known } = input;
  const sameName = known.filter((k) => k.name === target.name);
  const holder = sameName.filter((k) => !k.released).pop();
  const others = sameName.filter((k) => k.id !== target.id);
  let sentence: string;
  if (holder?.id === target.id) {
    sentence = `name ${target.name} is held by ${target.kind} ${shortId(target.id)}, reserved by request ${target.correlationId} at ${target.reservedAt}`;
    if (!created) sentence += ' (not created yet)';
  } else {
    const r = target.released;
    sentence = `name ${target.name} was held by ${target.kind} ${shortId(target.id)} from ${target.reservedAt}`;
    if (r)
      sentence += ` until ${r.at}, when it was ${r.how === 'removed' ? 'removed' : `compensated (${r.failedStep})`}`;
    if (holder)
      sentence += `; it is now held by ${holder.kind} ${shortId(holder.id)} (since ${holder.reservedAt}, request ${holder.correlationId})`;
    else sentence += '; nobody holds it now';
  }
  if (others.length > 0) {
    const fates = others.map(
      (o) =>
        `${shortId(o.id)} (${o.released ? (o.released.how === 'removed' ? 'removed' : `compensated at ${o.released.failedStep}`) : o.createdAt ? 'created' : 'in flight'})`,
    );
    sentence += `; ${others.length} other ${others.length === 1 ? 'attempt' : 'attempts'} reserved this name: ${fates.join(', ')}`;
  }
  return `${sentence}.`;
}

/** "stalled in X for D past the caller's deadline", measured to the step's next event, or now. */
function stallSentences(events: readonly LedgerEvent[], nowMs: number): string[] {
  const out: string[] = [];
  events.forEach((e, i) => {
    if (e.type !== 'OperationStalled') return;
    const d = e.data;
    const next = events.slice(i + 1).find((n) => n.type !== 'OperationStalled');
    const end = next ? next.at : new Date(nowMs).toISOString();
    const into = d.elapsedMs > 0 ? `${formatDuration(d.elapsedMs)} into the step` : 'before the step began';
    const how = next
      ? `until the next event, ${next.type}, at ${next.at}; the work went on for the caller's retry`
      : 'and it is still there';
    out.push(
      `stalled in ${d.step} for ${since(d.deadline, end)} past the caller's deadline ${d.deadline} (which passed ${into}), ${how}.`,
    );
  });
  return out;
}

function compensationSentences(e: LedgerEvent<'Compensated'>): string[] {
  const d = e.data;
  const code = d.error.code ? ` (code ${d.error.code})` : '';
  const first =
    d.failedStep === 'StartupRecovery'
      ? `compensated by startup recovery at ${e.at}: ${d.error.message}${code}.`
      : `${d.operation} failed at step ${d.failedStep} at ${e.at}: ${quoted(d.error.message)}${code}.`;
  const undone = d.undone.map((u) => `${u.step} ${u.ok ? 'ok' : `FAILED (${u.error ?? 'no reason given'})`}`);
  const failed = d.undone.filter((u) => !u.ok).length;
  return [
    first,
    undone.length === 0
      ? 'nothing needed undoing.'
      : `undone, newest first: ${undone.join(', ')}${failed > 0 ? `; ${failed} undo(s) failed and may have left something behind` : ''}.`,
    d.name ? `the name ${d.name} was released.` : 'no name had been reserved.',
  ];
}

/** What startup recovery decided, and whether the result ever reached a caller. */
function deliverySentences(events: readonly LedgerEvent[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.type === 'RecoveryDecided') {
      const d = e.data;
      out.push(
        `startup recovery at ${e.at} found ${d.operation} stopped after ${d.lastStep} and decided to ${d.decision === 'rollForward' ? 'roll it forward' : 'compensate it'}: ${d.reason}.`,
      );
    } else if (e.type === 'ResultUndelivered') {
      const d = e.data;
      const why =
        d.reason === 'cancelled'
          ? 'the caller cancelled its call'
          : d.reason === 'deadline'
            ? `the caller's deadline${d.callerDeadline ? ` ${d.callerDeadline}` : ''} passed`
            : 'it was rolled forward at startup, with no caller waiting';
      out.push(
        `the result never reached a caller (${why}, ${d.gaveUpAt}); a retry with the same request gets this id, one with another request replaces it, and nobody claiming it gets it removed.`,
      );
    }
  }
  return out;
}

function removalSentence(e: LedgerEvent<'ContainerRemoved'> | LedgerEvent<'SandboxRemoved'>): string {
  const discarded = e.data.discarded;
  if (!discarded) return `removed at ${e.at}; the name was released then.`;
  const why =
    discarded.reason === 'superseded'
      ? `a request with another digest${discarded.supersededBy ? ` (${discarded.supersededBy})` : ''} came for the name`
      : 'nobody claimed the undelivered result in time';
  const undone = discarded.undone.map((u) => `${u.step} ${u.ok ? 'ok' : `FAILED (${u.error ?? 'no reason given'})`}`);
  return `removed by the service at ${e.at}, never delivered: ${why}${undone.length > 0 ? `; undone: ${undone.join(', ')}` : ''}; the name was released then.`;
}

function lifecycleSentences(events: readonly LedgerEvent[]): string[] {
  const out: string[] = [];
  let execs = 0;
  for (const e of events) {
    switch (e.type) {
      case 'ContainerStarted':
        out.push(`started at ${e.data.startedAt} (pid ${e.data.pid}).`);
        break;
      case 'ContainerStopped':
        out.push(
          `stopped by StopContainer at ${e.data.stoppedAt} with ${e.data.signal}${e.data.killed ? `, then SIGKILL after the ${formatDuration(e.data.timeoutMs)} timeout` : ''}.`,
        );
        break;
      case 'ContainerExited':
        out.push(
          `exited at ${e.data.finishedAt} with code ${e.data.exitCode}, reason ${e.data.reason}${exitHint(e.data.reason, e.data.exitCode)}${e.data.message ? `: ${quoted(e.data.message)}` : ''}.`,
        );
        break;
      case 'SandboxReady':
        out.push(`ready at ${e.data.createdAt}: pause pid ${e.data.pid}, IP ${e.data.ip || 'none (host network)'}.`);
        break;
      case 'SandboxStopped':
        out.push(`stopped at ${e.data.stoppedAt}.`);
        break;
      case 'ExecRan':
        execs++;
        break;
      default:
        break;
    }
  }
  if (execs > 0) out.push(`ExecSync ran ${execs} ${execs === 1 ? 'command' : 'commands'} in it (see timeline).`);
  return out;
}

function exitHint(reason: string, code: number): string {
  if (reason === 'OOMKilled') return ' (the kernel killed it for using more memory than its limit)';
  if (code === 137) return ' (killed by SIGKILL)';
  if (code === 143) return ' (ended by SIGTERM)';
  return '';
}
