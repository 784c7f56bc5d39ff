import type { LedgerEvent } from '../domain/events.js';
import { NotFoundError } from '../domain/errors.js';
import { resolveIdPrefix } from '../domain/ids.js';
import { containerStore, type ContainerRecord } from './container-store.js';
import { imageStore, type ImageRecord } from './image-store.js';
import { containerNameIndex, type NameHold } from './name-index.js';
import { openSessions, type OpenSession } from './open-sessions.js';
import { operationsInFlight, type OperationInFlight } from './operations.js';
import { ReadModel } from './read-model.js';
import { sandboxNameIndex } from './sandbox-name-index.js';
import { sandboxStore, type SandboxRecord } from './sandbox-store.js';
import { undeliveredResults, type UndeliveredResult } from './undelivered-results.js';

export interface ProjectionsSnapshot {
  position: number;
  containers: Record<string, ContainerRecord>;
  containerNames: Record<string, NameHold>;
  sandboxes: Record<string, SandboxRecord>;
  sandboxNames: Record<string, NameHold>;
  operations: Record<string, OperationInFlight>;
  images: Record<string, ImageRecord>;
  undelivered: Record<string, UndeliveredResult>;
  sessions: Record<string, OpenSession>;
}

/** The last event the projections applied: what a snapshot of them covers. */
export interface AppliedEvent {
  seq: number;
  id: string;
  at: string;
}

/** Every read model, by the name a snapshot stores it under. */
export type ModelName = keyof Omit<ProjectionsSnapshot, 'position'>;

export interface ProjectionCounts {
  containers: number;
  sandboxes: number;
  containerNames: number;
  sandboxNames: number;
  operationsInFlight: number;
  /** Exec, Attach and PortForward sessions started and not ended. */
  openSessions: number;
}

/**
 * Every read model the service keeps, fed the same events in seq order: rebuilt from
 * the log at startup, then updated from each committed batch before its append resolves.
 */
export class Projections {
  readonly containers = new ReadModel(containerStore);
  readonly containerNames = new ReadModel(containerNameIndex);
  readonly sandboxes = new ReadModel(sandboxStore);
  readonly sandboxNames = new ReadModel(sandboxNameIndex);
  readonly operations = new ReadModel(operationsInFlight);
  readonly images = new ReadModel(imageStore);
  /** Results created but delivered to no caller, by stream (the retry rules and the unclaimed timers read it). */
  readonly undelivered = new ReadModel(undeliveredResults);
  /** Streaming sessions started and not ended, by session id (startup recovery ends them). */
  readonly sessions = new ReadModel(openSessions);
  private readonly all = [
    this.containers,
    this.containerNames,
    this.sandboxes,
    this.sandboxNames,
    this.operations,
    this.images,
    this.undelivered,
    this.sessions,
  ] as const;
  private last: AppliedEvent | undefined;

  apply(event: LedgerEvent): void {
    for (const model of this.all) model.apply(event);
    if (this.last === undefined || event.seq > this.last.seq)
      this.last = { seq: event.seq, id: event.id, at: event.at };
  }

  /** The last event applied (undefined before the first): a snapshot records it to prove which log it is of. */
  lastApplied(): AppliedEvent | undefined {
    return this.last;
  }

  /** Each read model under its snapshot name, in a fixed order. */
  models(): ReadonlyArray<readonly [ModelName, ReadModel<unknown>]> {
    return [
      ['containers', this.containers],
      ['containerNames', this.containerNames],
      ['sandboxes', this.sandboxes],
      ['sandboxNames', this.sandboxNames],
      ['operations', this.operations],
      ['images', this.images],
      ['undelivered', this.undelivered],
      ['sessions', this.sessions],
    ] as ReadonlyArray<readonly [ModelName, ReadModel<unknown>]>;
  }

  /** Marks restored read models as having applied `last` (see `ReadModel.restore`). */
  restoredAt(last: AppliedEvent): void {
    this.last = last;
  }

  applyAll(events: Iterable<LedgerEvent>): void {
    for (const event of events) this.apply(event);
  }

  position(): number {
    return this.containers.position();
  }

  /** A container by full id, unique id prefix, or full CRI name. */
  findContainer(ref: string): ContainerRecord | undefined {
    const byName = this.containerNames.get(ref);
    if (byName) return this.containers.get(byName.holderId);
    if (!/^[0-9a-f]+$/.test(ref)) return undefined;
    const id = resolveIdPrefix(ref, this.containers.keys());
    return id === undefined ? undefined : this.containers.get(id);
  }

  /** A sandbox by full id, unique id prefix, or full sandbox name. */
  findSandbox(ref: string): SandboxRecord | undefined {
    const byName = this.sandboxNames.get(ref);
    if (byName) return this.sandboxes.get(byName.holderId);
    if (!/^[0-9a-f]+$/.test(ref)) return undefined;
    const id = resolveIdPrefix(ref, this.sandboxes.keys());
    return id === undefined ? undefined : this.sandboxes.get(id);
  }

  getContainer(ref: string): ContainerRecord {
    const found = this.findContainer(ref);
    if (!found) throw new NotFoundError('container', ref);
    return found;
  }

  /** How many documents each read model holds. */
  counts(): ProjectionCounts {
    return {
      containers: this.containers.size,
      sandboxes: this.sandboxes.size,
      containerNames: this.containerNames.size,
      sandboxNames: this.sandboxNames.size,
      operationsInFlight: this.operations.size,
      openSessions: this.sessions.size,
    };
  }

  /** Sagas in flight, oldest first, with their age at `nowMs`. */
  operationsWithAge(nowMs: number): Array<OperationInFlight & { ageMs: number }> {
    return [...this.operations.values()]
      .sort((a, b) => a.startedSeq - b.startedSeq)
      .map((op) => ({ ...op, ageMs: Math.max(0, nowMs - Date.parse(op.startedAt)) }));
  }

  snapshot(): ProjectionsSnapshot {
    return {
      position: this.position(),
      containers: this.containers.snapshot(),
      containerNames: this.containerNames.snapshot(),
      sandboxes: this.sandboxes.snapshot(),
      sandboxNames: this.sandboxNames.snapshot(),
      operations: this.operations.snapshot(),
      images: this.images.snapshot(),
      undelivered: this.undelivered.snapshot(),
      sessions: this.sessions.snapshot(),
    };
  }
}
