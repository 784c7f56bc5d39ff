import { InvalidArgumentError } from '../../domain/errors.js';
import type { LedgerEvent } from '../../domain/events.js';
import { parseStream } from '../../domain/ids.js';

/*
 * Subject layout: `cri-ledger.<node>.<kind>.<id>.<EventType>`, each token escaped.
 *
 * NATS splits subjects on `.`, treats `*` and `>` as wildcards and refuses whitespace,
 * yet image names (`docker.io/library/busybox:latest`) and host names carry dots. So each
 * token is percent-escaped: `%` itself, `.`, `*`, `>`, whitespace and control characters
 * become `%XX` (the UTF-8 bytes, upper-case hex), everything else is kept. Because `%` is
 * escaped too, `decodeURIComponent` undoes it exactly.
 */

/** The first token of every subject the relay publishes. */
export const SUBJECT_PREFIX = 'cri-ledger';

// \s covers Unicode whitespace; the control ranges cover NUL and friends the server refuses.
// oxlint-disable-next-line no-control-regex -- matching control characters is the point
const NEEDS_ESCAPE = /[%.*>\s\u0000-\u001f\u007f]/gu;
const UTF8 = new TextEncoder();

function escapeChar(ch: string): string {
  let out = '';
  for (const byte of UTF8.encode(ch)) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** Escapes one subject token; the result never contains `.`, `*`, `>` or whitespace. */
export function subjectToken(value: string): string {
  // An empty token would make `a..b`, which NATS refuses; no id or node may be empty.
  if (value.length === 0) throw new InvalidArgumentError('subject token', 'must not be empty');
  return value.replace(NEEDS_ESCAPE, escapeChar);
}

/** The inverse of subjectToken. */
export function parseSubjectToken(token: string): string {
  try {
    return decodeURIComponent(token);
  } catch (cause) {
    throw new InvalidArgumentError('subject token', `"${token}" is not a cri-ledger escaped token`, { cause });
  }
}

/**
 * The subject an event is published on. `node` defaults to the event's own node; the
 * relay passes its configured node, so every event of one log lands under the subjects
 * its stream was set up for, even if the node was renamed between restarts.
 */
export function subjectFor(event: Pick<LedgerEvent, 'node' | 'stream' | 'type'>, node: string = event.node): string {
  const { kind, id } = parseStream(event.stream);
  return [SUBJECT_PREFIX, subjectToken(node), kind, subjectToken(id), subjectToken(event.type)].join('.');
}

/** Every subject of one node: `cri-ledger.<node>.>`, what a node adds to the stream. */
export function nodeSubjects(node: string): string {
  return `${SUBJECT_PREFIX}.${subjectToken(node)}.>`;
}

/** The parts of a subject the relay published, unescaped. */
export interface ParsedSubject {
  node: string;
  kind: string;
  id: string;
  type: string;
}

/** Splits and unescapes a relay subject; throws InvalidArgumentError for anything else. */
export function parseSubject(subject: string): ParsedSubject {
  const tokens = subject.split('.');
  if (tokens.length !== 5 || tokens[0] !== SUBJECT_PREFIX) {
    throw new InvalidArgumentError('subject', `"${subject}" is not ${SUBJECT_PREFIX}.<node>.<kind>.<id>.<type>`);
  }
  const [, node, kind, id, type] = tokens.map(parseSubjectToken) as [string, string, string, string, string];
  return { node, kind, id, type };
}

/**
 * Whether every subject matching `filter` also matches `pattern` (NATS wildcard rules:
 * `*` is one token, `>` one or more trailing tokens). Used to tell whether an existing
 * stream already captures a node's subjects, e.g. `cri-ledger.>` covers `cri-ledger.a.>`.
 */
export function subjectCovers(pattern: string, filter: string): boolean {
  const p = pattern.split('.');
  const f = filter.split('.');
  for (let i = 0; i < p.length; i++) {
    const pt = p[i]!;
    const ft = f[i];
    if (pt === '>') return ft !== undefined;
    if (ft === undefined || ft === '>') return false;
    if (pt === '*') continue;
    if (ft === '*' || pt !== ft) return false;
  }
  return p.length === f.length;
}
