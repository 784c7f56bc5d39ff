import type { SnapshotStore, StoredSnapshot } from '../../../commands/ports.js';
import { decodeEvent } from '../../../domain/events.js';
import {
  decodeSnapshot,
  diffProjections,
  type ProjectionDifference,
} from '../../../projections/projection-snapshot.js';
import { Projections } from '../../../projections/projections.js';

/** What `verify` found for one stored snapshot. */
export interface SnapshotCheck {
  location: string;
  seq: number;
  /**
   * `ok`: equal to a full replay up to its seq. `differs` and `corrupt` are violations;
   * the others are notes: a start skips such a snapshot, which costs time, never state.
   */
  result: 'ok' | 'differs' | 'corrupt' | 'other-schema' | 'other-log' | 'past-head' | 'unreadable' | 'not-compared';
  detail?: string;
  differences?: ProjectionDifference[];
}

interface Target {
  snapshot: StoredSnapshot;
  eventId: string;
  projections: Projections;
}

/**
 * Compares stored snapshots with a full replay, fed the log's records in seq order
 * beside the other checks: the replay stops at the newest snapshot's seq.
 */
export class SnapshotChecker {
  private readonly checks = new Map<string, SnapshotCheck>();
  private readonly targets = new Map<number, Target[]>();
  private readonly replay = new Projections();
  private lastTarget = 0;
  private broken: string | undefined;
  /** Why the store could not be listed: nothing was checked. */
  listError: string | undefined;

  private constructor(private readonly order: StoredSnapshot[]) {}

  /** Reads every stored snapshot now, before the log: the log only grows past them. */
  static async open(store: SnapshotStore): Promise<SnapshotChecker> {
    let list: StoredSnapshot[];
    try {
      list = await store.list();
    } catch (error) {
      const checker = new SnapshotChecker([]);
      checker.listError = message(error);
      return checker;
    }
    const checker = new SnapshotChecker(list);
    for (const snapshot of list) {
      let text: string;
      try {
        text = await store.read(snapshot);
      } catch (error) {
        const code = ((error as { cause?: { code?: string } }).cause ?? {}).code;
        // The running service prunes old snapshots: one listed a moment ago may be gone.
        if (code === 'ENOENT') checker.note(snapshot, 'not-compared', 'removed while verify ran');
        else checker.note(snapshot, code === 'EACCES' || code === 'EPERM' ? 'unreadable' : 'corrupt', message(error));
        continue;
      }
      try {
        const { header, projections } = decodeSnapshot(text);
        const target = { snapshot, eventId: header.eventId, projections };
        checker.targets.set(header.seq, [...(checker.targets.get(header.seq) ?? []), target]);
        checker.lastTarget = Math.max(checker.lastTarget, header.seq);
      } catch (error) {
        const detail = message(error);
        checker.note(snapshot, /^schema \d+;/.test(detail) ? 'other-schema' : 'corrupt', detail);
      }
    }
    return checker;
  }

  /** A checker with nothing to check, and why (reported as "not checked"). */
  static none(reason: string): SnapshotChecker {
    const checker = new SnapshotChecker([]);
    checker.listError = reason;
    return checker;
  }

  get count(): number {
    return this.order.length;
  }

  private note(snapshot: StoredSnapshot, result: SnapshotCheck['result'], detail?: string): void {
    this.checks.set(snapshot.location, {
      location: snapshot.location,
      seq: snapshot.seq,
      result,
      ...(detail ? { detail } : {}),
    });
  }

  /** The next record of the log (in seq order, as `verify` reads it). */
  add(record: { seq: number; json: string }): void {
    if (this.broken !== undefined || record.seq > this.lastTarget) return;
    try {
      const event = decodeEvent(record.json, record.seq);
      if (event.seq !== this.replay.position() + 1)
        throw new Error(`seq ${event.seq} follows ${this.replay.position()}`);
      this.replay.apply(event);
      for (const target of this.targets.get(event.seq) ?? []) {
        if (target.eventId !== event.id) {
          this.note(
            target.snapshot,
            'other-log',
            `the log has event ${event.id} at seq ${event.seq}, the snapshot ${target.eventId}`,
          );
          continue;
        }
        const differences = diffProjections(target.projections, this.replay, 20);
        if (differences.length === 0) this.note(target.snapshot, 'ok');
        else
          this.checks.set(target.snapshot.location, {
            location: target.snapshot.location,
            seq: event.seq,
            result: 'differs',
            detail: differences.map((d) => `${d.model} ${d.key}: ${d.kind}`).join('; '),
            differences,
          });
      }
    } catch (error) {
      this.broken = `the log cannot be replayed at seq ${record.seq}: ${message(error)}`;
    }
  }

  /** One check per stored snapshot, newest first. */
  report(): SnapshotCheck[] {
    return this.order.map(
      (snapshot) =>
        this.checks.get(snapshot.location) ??
        (this.broken
          ? { location: snapshot.location, seq: snapshot.seq, result: 'not-compared', detail: this.broken }
          : { location: snapshot.location, seq: snapshot.seq, result: 'past-head', detail: "past the log's head" }),
    );
  }
}

/** Whether a check is a violation (exit 3). */
export function snapshotViolates(check: SnapshotCheck): boolean {
  return check.result === 'differs' || check.result === 'corrupt';
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
