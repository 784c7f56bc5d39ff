import { InvalidArgumentError } from '../../domain/errors.js';
import { EVENT_TYPES, type LedgerEvent } from '../../domain/events.js';
import { parseStream } from '../../domain/ids.js';

/** Which events a read returns. Every set field narrows; seq bounds are inclusive. */
export interface EventFilter {
  fromSeq?: number;
  toSeq?: number;
  /** ISO 8601: only events recorded at or after this time. */
  since?: string;
  /** ISO 8601: stop before the first event recorded after this time. */
  until?: string;
  streams?: readonly string[];
  types?: readonly string[];
}

/** A validated filter, ready to test events against. */
export interface CompiledFilter {
  readonly fromSeq: number;
  /** Infinity when unbounded. */
  readonly toSeq: number;
  /** True when every event in the seq range passes: readers may skip decoding. */
  readonly passesAll: boolean;
  /** Whether `event` is selected (seq, time, stream and type). */
  matches(event: Pick<LedgerEvent, 'seq' | 'at' | 'stream' | 'type'>): boolean;
  /**
   * Whether reading can stop at `event`: it lies past `toSeq` or `until`. `at` never
   * decreases along seq, so nothing after it can match either.
   */
  ended(event: Pick<LedgerEvent, 'seq' | 'at'>): boolean;
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

function parseTime(value: string, field: string): number {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidArgumentError(field, `"${value}" is not an RFC 3339 time`);
  return ms;
}

function checkSeq(value: number | undefined, field: string): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new InvalidArgumentError(field, `"${value}" is not a seq (a whole number, 1 or more)`);
  }
}

/**
 * Validates a filter, naming the offending field (`<prefix>.types`, ...), so a typo in
 * an event type is an error and not an empty result.
 */
export function compileFilter(filter: EventFilter, prefix = 'filter'): CompiledFilter {
  checkSeq(filter.fromSeq, `${prefix}.fromSeq`);
  checkSeq(filter.toSeq, `${prefix}.toSeq`);
  const sinceMs = filter.since ? parseTime(filter.since, `${prefix}.since`) : undefined;
  const untilMs = filter.until ? parseTime(filter.until, `${prefix}.until`) : undefined;
  for (const type of filter.types ?? []) {
    if (!KNOWN_TYPES.has(type)) {
      throw new InvalidArgumentError(
        `${prefix}.types`,
        `unknown event type "${type}" (known: ${EVENT_TYPES.join(', ')})`,
      );
    }
  }
  for (const stream of filter.streams ?? []) {
    try {
      parseStream(stream);
    } catch {
      throw new InvalidArgumentError(`${prefix}.streams`, `"${stream}" is not <container|sandbox|image>-<id>`);
    }
  }
  const types = filter.types && filter.types.length > 0 ? new Set(filter.types) : undefined;
  const streams = filter.streams && filter.streams.length > 0 ? new Set(filter.streams) : undefined;
  const fromSeq = Math.max(1, filter.fromSeq ?? 1);
  const toSeq = filter.toSeq ? filter.toSeq : Infinity;
  return {
    fromSeq,
    toSeq,
    passesAll: !types && !streams && sinceMs === undefined && untilMs === undefined,
    matches(event) {
      if (event.seq < fromSeq || event.seq > toSeq) return false;
      if (sinceMs !== undefined && Date.parse(event.at) < sinceMs) return false;
      if (untilMs !== undefined && Date.parse(event.at) > untilMs) return false;
      if (types && !types.has(event.type)) return false;
      if (streams && !streams.has(event.stream)) return false;
      return true;
    },
    ended(event) {
      return event.seq > toSeq || (untilMs !== undefined && Date.parse(event.at) > untilMs);
    },
  };
}
