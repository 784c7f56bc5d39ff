import { ContainerCreatedV2, type EventData, type NewEvent } from '../domain/events.js';
import type { ContainerRecord } from '../projections/container-store.js';
import type { OperationInFlight } from '../projections/operations.js';
import { orphanLabel, type RuntimeDiff } from '../projections/runtime-diff.js';
import { CREATED_EXTENSION_KEY } from './create-container.js';
import type { Ledger } from './ledger.js';
import { endPauseTask } from './pod-runtime.js';
import type { OpenSession } from '../projections/open-sessions.js';
import type {
  ContainerFiles,
  ContainerRuntime,
  ExecProcesses,
  PodFiles,
  SandboxNetwork,
  TaskRuntime,
} from './ports.js';
import { recordSessionEnded, type SessionRecordDeps } from './session-records.js';
import { specDigest } from './spec-digest.js';
import { containerUndos, runUndos, sandboxUndos, type UndoResult } from './undo-by-id.js';

/*
 * Startup recovery of the sagas a previous process left in flight (a stream with
 * NameReserved or SandboxReserved and no terminal event): the service stopped, or was
 * killed, while the saga ran, so its caller never got an answer. Each is either rolled
 * forward or compensated, and a RecoveryDecided in the same batch says which and why:
 *
 * - Roll forward (CreateContainer only) when its side effects are provably complete:
 *   containerd holds the container record with the very spec SpecGenerated recorded
 *   (same spec digest), the rootfs snapshot keyed by the id exists, and the record
 *   carries the ContainerCreated data the saga was about to write. The missing
 *   SnapshotPrepared and ContainerCreated are appended, with ResultUndelivered (no
 *   caller got the id): a retry with the same request claims it, one with another
 *   digest replaces it, and nobody claiming it removes it after the unclaimed-result
 *   timeout. This saves kubelet's retry a second creation.
 * - Otherwise compensate, keyed by its id: every undo of its operation runs newest
 *   first, whether or not its side effect happened (each undo succeeds when there is
 *   nothing to undo), and one `Compensated` records it (`failedStep: StartupRecovery`),
 *   the step the saga had reached, and each undo. The name is free again, so kubelet's
 *   retry of the same name succeeds instead of looping on "name is reserved".
 *   RunPodSandbox is always compensated: a pod's network and pause task are cheap to
 *   make again, and a half-made one cannot be checked from containerd alone.
 *
 * One broken item never stops the others: a failed undo is recorded as failed, and the
 * stream stays in flight (nothing is written for it) for the next start to try again.
 */

export const RECOVERY_STEP = 'StartupRecovery';
export const RECOVERY_CODE = 'RECOVERY';

export interface RecoveryDeps {
  ledger: Ledger;
  runtime: ContainerRuntime;
  tasks: TaskRuntime;
  containerFiles: ContainerFiles;
  podFiles: PodFiles;
  network: SandboxNetwork;
  snapshotter: string;
  /** Milliseconds on a monotonic clock, for the undo durations. */
  clock: () => number;
  /** Now, ISO 8601: when a rolled-forward result starts waiting for its claim. */
  now: () => string;
}

export interface RecoveryOutcome {
  stream: string;
  operation: OperationInFlight['operation'];
  id: string;
  decision: 'rollForward' | 'compensate';
  /** Every undo succeeded and Compensated is recorded. */
  compensated: boolean;
  /** The missing events were recorded and the container is CREATED. */
  rolledForward: boolean;
  undone: UndoResult[];
}

/** What startup recovery found in containerd for a CreateContainer left in flight. */
export interface RollForwardEvidence {
  containerRecord: boolean;
  specDigestMatches: boolean;
  snapshot: boolean;
  createdData: boolean;
}

export type RecoveryDecision =
  | { decision: 'rollForward'; reason: string; created: EventData['ContainerCreated'] }
  | { decision: 'compensate'; reason: string };

/**
 * Pure: roll a CreateContainer forward only when everything it did is there and is what
 * the log recorded; otherwise compensate, saying what was missing.
 */
export function decideCreateContainerRecovery(
  record: Pick<ContainerRecord, 'id' | 'specDigest'> | undefined,
  stored: { specDigest: string; snapshotKey: string; extension: Record<string, unknown> } | undefined,
  snapshotExists: boolean,
): RecoveryDecision & { evidence: RollForwardEvidence } {
  const created = ContainerCreatedV2.safeParse(stored?.extension[CREATED_EXTENSION_KEY]);
  const evidence: RollForwardEvidence = {
    containerRecord: stored !== undefined,
    specDigestMatches:
      stored !== undefined && record?.specDigest !== undefined && stored.specDigest === record.specDigest,
    snapshot:
      snapshotExists && (stored === undefined || stored.snapshotKey === '' || stored.snapshotKey === record?.id),
    createdData: created.success,
  };
  const missing = [
    !evidence.containerRecord && 'containerd holds no container record for it',
    evidence.containerRecord &&
      !evidence.specDigestMatches &&
      (record?.specDigest
        ? "containerd's record holds another spec than SpecGenerated recorded"
        : 'the log has no SpecGenerated to compare the record with'),
    !evidence.snapshot && 'its rootfs snapshot does not exist',
    evidence.containerRecord &&
      !evidence.createdData &&
      "containerd's record does not carry the data ContainerCreated needs",
  ].filter((m): m is string => typeof m === 'string');
  if (missing.length === 0 && created.success) {
    return {
      decision: 'rollForward',
      reason: 'containerd holds the container record with the recorded spec, and its snapshot exists',
      created: created.data,
      evidence,
    };
  }
  return { decision: 'compensate', reason: `${missing.join('; ')}: its side effects are not complete`, evidence };
}

const SANDBOX_REASON =
  'RunPodSandbox is always compensated at startup: a pod network and pause task cannot be proven complete from containerd, and are cheap to make again';

/** Rolls forward or compensates each of `inFlight` (the sagas in flight when this process started). */
export async function recoverInFlight(
  deps: RecoveryDeps,
  inFlight: readonly OperationInFlight[],
): Promise<RecoveryOutcome[]> {
  const outcomes: RecoveryOutcome[] = [];
  for (const op of inFlight) {
    const current = deps.ledger.projections.operations.get(op.stream);
    if (!current) continue; // ended meanwhile
    if (op.operation === 'CreateContainer') {
      const rolled = await tryRollForward(deps, current);
      if (rolled.rolledForward) {
        outcomes.push({
          stream: op.stream,
          operation: op.operation,
          id: op.id,
          decision: 'rollForward',
          compensated: false,
          rolledForward: true,
          undone: [],
        });
        continue;
      }
      outcomes.push(await compensate(deps, current, rolled.decided));
      continue;
    }
    outcomes.push(
      await compensate(deps, current, {
        operation: op.operation,
        decision: 'compensate',
        reason: SANDBOX_REASON,
        lastStep: current.lastStep,
      }),
    );
  }
  return outcomes;
}

async function inspect(deps: RecoveryDeps, id: string) {
  const stored = await deps.runtime.storedContainer(id);
  const snapshotter = stored?.snapshotter || deps.snapshotter;
  const snapshot = await deps.runtime.statSnapshot(id, snapshotter);
  return { stored: stored && { ...stored, specDigest: await specDigest(stored.spec) }, snapshot, snapshotter };
}

async function tryRollForward(
  deps: RecoveryDeps,
  op: OperationInFlight,
): Promise<{ rolledForward: true } | { rolledForward: false; decided: EventData['RecoveryDecided'] }> {
  const record = deps.ledger.projections.containers.get(op.id);
  let decided: ReturnType<typeof decideCreateContainerRecovery>;
  let found: Awaited<ReturnType<typeof inspect>>;
  try {
    found = await inspect(deps, op.id);
    decided = decideCreateContainerRecovery(record, found.stored, found.snapshot !== undefined);
  } catch (error) {
    const reason = `containerd could not be asked whether its side effects are complete (${error instanceof Error ? error.message : String(error)})`;
    return {
      rolledForward: false,
      decided: { operation: op.operation, decision: 'compensate', reason, lastStep: op.lastStep },
    };
  }
  const base = { operation: op.operation, lastStep: op.lastStep, evidence: decided.evidence };
  if (decided.decision !== 'rollForward' || !record)
    return { rolledForward: false, decided: { ...base, decision: 'compensate', reason: decided.reason } };
  const created = decided.created;
  try {
    // Keyed by the id and idempotent: the state dir may be a tmpfs that a reboot emptied.
    await deps.containerFiles.createDirs(op.id);
    await deps.containerFiles.createIo(op.id, { stdin: created.stdin ?? false, tty: created.tty ?? false });
  } catch (error) {
    const reason = `its directories or FIFOs could not be restored (${error instanceof Error ? error.message : String(error)})`;
    return { rolledForward: false, decided: { ...base, decision: 'compensate', reason } };
  }
  const c = op.correlationId;
  const events: NewEvent[] = [
    { type: 'RecoveryDecided', correlationId: c, data: { ...base, decision: 'rollForward', reason: decided.reason } },
  ];
  if (!record.snapshot)
    events.push({
      type: 'SnapshotPrepared',
      correlationId: c,
      data: { snapshotter: found.snapshotter, key: op.id, parent: found.snapshot?.parent ?? '' },
    });
  events.push(
    { type: 'ContainerCreated', correlationId: c, data: created },
    {
      type: 'ResultUndelivered',
      correlationId: c,
      data: { name: op.name, requestDigest: record.requestDigest, reason: 'recovery', gaveUpAt: deps.now() },
    },
  );
  await deps.ledger.append(op.stream, op.version, events);
  return { rolledForward: true };
}

async function compensate(
  deps: RecoveryDeps,
  op: OperationInFlight,
  decided: EventData['RecoveryDecided'],
): Promise<RecoveryOutcome> {
  const undos =
    op.operation === 'CreateContainer'
      ? containerUndos({ runtime: deps.runtime, files: deps.containerFiles }, op.id, deps.snapshotter)
      : sandboxUndos(
          { runtime: deps.runtime, tasks: deps.tasks, network: deps.network, podFiles: deps.podFiles },
          op.id,
          deps.snapshotter,
          deps.ledger.projections.sandboxes.get(op.id),
        );
  const { results: undone } = await runUndos(undos, deps.clock);
  const compensated = undone.every((u) => u.ok);
  if (compensated) {
    await deps.ledger.append(op.stream, op.version, [
      { type: 'RecoveryDecided', correlationId: op.correlationId, data: decided },
      {
        type: 'Compensated',
        correlationId: op.correlationId,
        data: {
          operation: op.operation,
          failedStep: RECOVERY_STEP,
          error: {
            message: `the service stopped while ${op.operation} was at ${op.lastStep}; its caller never got an answer, so it was undone at startup (${decided.reason})`,
            code: RECOVERY_CODE,
          },
          undone,
          name: op.name,
        },
      },
    ]);
  }
  return {
    stream: op.stream,
    operation: op.operation,
    id: op.id,
    decision: 'compensate',
    compensated,
    rolledForward: false,
    undone,
  };
}

/**
 * Removes what containerd holds with cri-ledger's labels that the log never heard of
 * (left by a crash before a saga's first event, or made by hand), and records that and
 * the log's objects containerd lacks in one RuntimeReconciled on the node's stream.
 * Writes nothing when the two agree.
 */
export async function reconcileWithRuntime(
  deps: RecoveryDeps & { nodeStream: string; correlationId: string },
  diff: RuntimeDiff,
): Promise<RuntimeDiff> {
  const removed: Array<{ kind: string; id: string; ok: boolean; error?: string }> = [];
  const attempt = async (kind: string, id: string, steps: Array<() => Promise<unknown>>): Promise<void> => {
    try {
      for (const step of steps) await step();
      removed.push({ kind, id, ok: true });
    } catch (error) {
      removed.push({ kind, id, ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  };
  for (const c of diff.orphanContainers) {
    await attempt(orphanLabel(c.kind), c.id, [
      () => endPauseTask(deps.tasks, c.id),
      () => deps.runtime.deleteContainer(c.id),
      () => deps.runtime.removeSnapshot(c.id, deps.snapshotter),
    ]);
  }
  for (const key of diff.orphanSnapshots)
    await attempt('snapshot', key, [() => deps.runtime.removeSnapshot(key, deps.snapshotter)]);
  for (const id of diff.orphanLeases) await attempt('lease', id, [() => deps.runtime.deleteLease(id)]);
  if (removed.length > 0 || diff.missing.length > 0) {
    await deps.ledger.append(deps.nodeStream, 'any', [
      {
        type: 'RuntimeReconciled',
        correlationId: deps.correlationId,
        data: { orphansRemoved: removed, missing: diff.missing },
      },
    ]);
  }
  return diff;
}

/** What was recorded for a session a previous process left open. */
export interface EndedSession {
  sessionId: string;
  kind: OpenSession['kind'];
  stream: string;
  /** Whether the end is on the record (false: the append failed, `recordError` says why). */
  recorded: boolean;
  recordError?: string;
  /** The exec process could not be killed (it may still run); why. */
  killError?: string;
}

/**
 * Ends every session a previous process left open (`sessions`, read before this process
 * could start any), reason `service-restarted`: the bytes went through a process that is
 * gone, so no session can still be bridged, and none may stay open on the record. An
 * exec's process is killed first when `execs` is given (its containerd exec id is the
 * session id), so a dropped `exec -it` does not outlive the restart either. Bytes were
 * counted by the dead process: they are left out, not recorded as 0.
 */
export async function endSessionsLeftOpen(
  deps: SessionRecordDeps & { execs?: ExecProcesses; now: () => string },
  sessions: readonly OpenSession[],
): Promise<EndedSession[]> {
  const out: EndedSession[] = [];
  for (const s of sessions) {
    let killError: string | undefined;
    if (s.kind === 'exec' && deps.execs) {
      try {
        await deps.execs.kill(s.targetId, s.sessionId);
      } catch (error) {
        killError = error instanceof Error ? error.message : String(error);
      }
    }
    const error = `the service restarted while the session was open${killError ? `; its process could not be killed: ${killError}` : ''}`;
    const ended: EndedSession = { sessionId: s.sessionId, kind: s.kind, stream: s.stream, recorded: false };
    if (killError) ended.killError = killError;
    try {
      // One that cannot be written (a full disk) does not keep the others open.
      await recordSessionEnded(deps, {
        sessionId: s.sessionId,
        reason: 'service-restarted',
        error,
        endedAt: deps.now(),
      });
      ended.recorded = true;
    } catch (failure) {
      ended.recordError = failure instanceof Error ? failure.message : String(failure);
    }
    out.push(ended);
  }
  return out;
}
