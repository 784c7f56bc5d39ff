import { decodeEvent, SAGA_BEGIN, SAGA_END, type LedgerEvent } from '../../../domain/events.js';
import { parseStream } from '../../../domain/ids.js';

/** The checks `verify` runs, in the order it reports them. */
export const CHECKS = ['decode', 'seq', 'version', 'time', 'names', 'sagas'] as const;
export type Check = (typeof CHECKS)[number];

export interface Violation {
  check: Check;
  /** The seq of the record at fault, when it has one. */
  seq?: number;
  detail: string;
  /** A seq violation's missing seqs: retention's record may explain them (verify asks it). */
  gap?: readonly [from: number, to: number];
  /** A version violation at a stream's first event: retention may have removed its beginning. */
  streamStart?: { stream: string; version: number };
}

export interface OpenSaga {
  stream: string;
  operation: string;
  name: string;
  startedSeq: number;
  startedAt: string;
  lastStep: string;
  correlationId: string;
  ageMs: number;
  /** The step running when the caller's deadline passed, if it did. */
  stalled?: { step: string };
}

export interface VerifyReport {
  records: number;
  firstSeq?: number;
  lastSeq?: number;
  streams: number;
  violations: Violation[];
  inFlight: OpenSaga[];
  /** Seq gaps and stream starts explained by retention's record (not violations). */
  prunedGaps?: number;
}

interface Hold {
  id: string;
  seq: number;
}

/**
 * Checks a log's invariants record by record, in bounded memory per stream and name:
 *  - every record decodes (all failures are reported, not only the first);
 *  - seqs run 1, 2, 3, ... without gaps or repeats;
 *  - each stream's versions run 1..n in seq order;
 *  - `at` never decreases along seq;
 *  - no name is held by two live containers (or two live sandboxes) at once;
 *  - each saga has ended, or is listed as in flight with its age; none ends twice.
 * Name holds follow the projections: a name is held from its reservation until the
 * holder's own removal or compensation releases it.
 */
export class LogVerifier {
  private readonly violations: Violation[] = [];
  private readonly versions = new Map<string, number>();
  private readonly names = { container: new Map<string, Hold>(), sandbox: new Map<string, Hold>() };
  private readonly sagas = new Map<string, Omit<OpenSaga, 'ageMs'>>();
  private records = 0;
  private firstSeq: number | undefined;
  private expectedSeq: number | undefined;
  private lastAt = -Infinity;
  private prunedGaps = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Feeds the next record as stored; `where` locates it when its seq is not its key (NATS). */
  add(record: { seq: number; json: string; where?: string }): void {
    this.records++;
    this.checkSeq(record.seq);
    let event: LedgerEvent;
    try {
      event = decodeEvent(record.json, record.where ? undefined : record.seq);
    } catch (error) {
      const at = record.where ? ` (${record.where})` : '';
      this.violations.push({
        check: 'decode',
        seq: record.seq || undefined,
        detail: `${(error as Error).message}${at}`,
      });
      this.salvageVersion(record.json);
      return;
    }
    this.checkVersion(event);
    const at = Date.parse(event.at);
    if (at < this.lastAt) this.fail('time', event.seq, `recorded at ${event.at}, before the previous event`);
    this.lastAt = Math.max(this.lastAt, at);
    this.checkNames(event);
    this.checkSaga(event);
  }

  /** Drops the seq gaps and stream starts retention's record explains (see `withoutPruned`). */
  async explainPruned(pruned: PrunedLookup): Promise<void> {
    if (!this.violations.some((v) => v.gap || v.streamStart)) return;
    const { violations, explained } = await withoutPruned(this.violations, pruned);
    this.violations.splice(0, this.violations.length, ...violations);
    this.prunedGaps += explained;
  }

  report(): VerifyReport {
    const now = this.now();
    const out: VerifyReport = {
      records: this.records,
      streams: this.versions.size,
      violations: [...this.violations],
      inFlight: [...this.sagas.values()].map((s) => ({ ...s, ageMs: Math.max(0, now - Date.parse(s.startedAt)) })),
    };
    if (this.prunedGaps > 0) out.prunedGaps = this.prunedGaps;
    if (this.firstSeq !== undefined) out.firstSeq = this.firstSeq;
    if (this.expectedSeq !== undefined) out.lastSeq = this.expectedSeq - 1;
    return out;
  }

  private fail(check: Check, seq: number | undefined, detail: string): void {
    this.violations.push(seq === undefined ? { check, detail } : { check, seq, detail });
  }

  private checkSeq(seq: number): void {
    if (!(seq > 0)) return; // a record without a readable seq: the decode check reports it
    if (this.expectedSeq === undefined) {
      this.firstSeq = seq;
      if (seq !== 1)
        this.violations.push({
          check: 'seq',
          seq: 1,
          detail: seq === 2 ? 'seq 1 is missing' : `seqs 1..${seq - 1} are missing`,
          gap: [1, seq - 1],
        });
    } else if (seq > this.expectedSeq) {
      const gap =
        seq - 1 === this.expectedSeq
          ? `seq ${this.expectedSeq} is missing`
          : `seqs ${this.expectedSeq}..${seq - 1} are missing`;
      this.violations.push({ check: 'seq', seq: this.expectedSeq, detail: gap, gap: [this.expectedSeq, seq - 1] });
    } else if (seq < this.expectedSeq) {
      this.fail('seq', seq, `seq ${seq} appears again after seq ${this.expectedSeq - 1}`);
      return;
    }
    this.expectedSeq = seq + 1;
  }

  /**
   * A record whose envelope still parses keeps its stream's version count moving, so one
   * bad payload is reported once and not again as a version gap at the next event.
   */
  private salvageVersion(json: string): void {
    try {
      const raw = JSON.parse(json) as { stream?: unknown; version?: unknown };
      if (typeof raw.stream === 'string' && typeof raw.version === 'number') {
        this.versions.set(raw.stream, Math.max(this.versions.get(raw.stream) ?? 0, raw.version));
      }
    } catch {
      // Not JSON at all: nothing to salvage; the next event of its stream shows the gap.
    }
  }

  private checkVersion(event: LedgerEvent): void {
    const previous = this.versions.get(event.stream) ?? 0;
    if (event.version !== previous + 1) {
      const detail = `${event.stream} is at version ${event.version}, expected ${previous + 1}`;
      this.violations.push({
        check: 'version',
        seq: event.seq,
        detail,
        ...(previous === 0 ? { streamStart: { stream: event.stream, version: event.version } } : {}),
      });
    }
    this.versions.set(event.stream, Math.max(previous, event.version));
  }

  private checkNames(event: LedgerEvent): void {
    const kind = event.stream.startsWith('container-')
      ? 'container'
      : event.stream.startsWith('sandbox-')
        ? 'sandbox'
        : undefined;
    if (!kind) return;
    const id = parseStream(event.stream).id;
    const held = this.names[kind];
    let reserve: string | undefined;
    let release: string | undefined;
    if (event.type === 'NameReserved' || event.type === 'SandboxReserved') reserve = event.data.name;
    else if (event.type === 'ContainerRemoved' || event.type === 'SandboxRemoved') release = event.data.name;
    else if (event.type === 'Compensated') release = event.data.name;
    if (reserve !== undefined) {
      const holder = held.get(reserve);
      if (holder && holder.id !== id) {
        this.fail(
          'names',
          event.seq,
          `${kind} name ${reserve} reserved by ${id.slice(0, 12)} while ${holder.id.slice(0, 12)} holds it (since seq ${holder.seq})`,
        );
      } else if (!holder) held.set(reserve, { id, seq: event.seq });
    }
    if (release !== undefined && held.get(release)?.id === id) held.delete(release);
  }

  private checkSaga(event: LedgerEvent): void {
    if (SAGA_BEGIN.has(event.type)) {
      const name = event.type === 'NameReserved' || event.type === 'SandboxReserved' ? event.data.name : '';
      const operation = event.type === 'NameReserved' ? 'CreateContainer' : 'RunPodSandbox';
      this.sagas.set(event.stream, {
        stream: event.stream,
        operation,
        name,
        startedSeq: event.seq,
        startedAt: event.at,
        lastStep: event.type,
        correlationId: event.correlationId,
      });
      return;
    }
    const open = this.sagas.get(event.stream);
    if (open) {
      // A stall record is not a step reached.
      if (event.type === 'OperationStalled') open.stalled = { step: event.data.step };
      else open.lastStep = event.type;
      if (SAGA_END.has(event.type) || event.type === 'ContainerRemoved' || event.type === 'SandboxRemoved')
        this.sagas.delete(event.stream);
      return;
    }
    // A terminal event with no saga open: the saga ended twice, or never began.
    const sagaOperation = event.type === 'Compensated' ? event.data.operation : undefined;
    if (
      event.type === 'ContainerCreated' ||
      event.type === 'SandboxReady' ||
      sagaOperation === 'CreateContainer' ||
      sagaOperation === 'RunPodSandbox'
    ) {
      this.fail('sagas', event.seq, `${event.type} in ${event.stream} ends no saga in flight`);
    }
  }
}

/** Retention's record of a log, as `EventSource.pruned` answers. */
export type PrunedLookup = (query: {
  fromSeq?: number;
  toSeq?: number;
  streams?: readonly string[];
}) => Promise<{ eventsInRange: number; streamsAsked: Array<{ stream: string; version: number }> } | undefined>;

/**
 * Drops the violations that retention's record explains: seq gaps it removed whole, and
 * streams whose first versions it removed. What is left is a real defect.
 */
export async function withoutPruned(
  violations: readonly Violation[],
  pruned: PrunedLookup,
): Promise<{ violations: Violation[]; explained: number }> {
  const kept: Violation[] = [];
  let explained = 0;
  for (const v of violations) {
    if (v.gap) {
      const r = await pruned({ fromSeq: v.gap[0], toSeq: v.gap[1] });
      if (r && r.eventsInRange === v.gap[1] - v.gap[0] + 1) {
        explained++;
        continue;
      }
    } else if (v.streamStart) {
      const r = await pruned({ streams: [v.streamStart.stream], fromSeq: 1, toSeq: 1 });
      const t = r?.streamsAsked[0];
      if (t && t.version === v.streamStart.version - 1) {
        explained++;
        continue;
      }
    }
    kept.push(v);
  }
  return { violations: kept, explained };
}
