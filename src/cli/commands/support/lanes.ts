import { type LedgerEvent, SAGA_BEGIN, SAGA_END } from '../../../domain/events.js';
import { parseStream } from '../../../domain/ids.js';
import { shortId, summarize } from './summary.js';

/*
 * What a picture of an incident shows, computed from events alone: one lane per
 * container or pod sandbox; each saga step (CreateContainer's, RunPodSandbox's) a bar
 * from the previous event of its stream to the event, so its width is the step's
 * duration; the states between lifecycle events as thin bands (created, running, exited;
 * ready, not ready); and marks for what an on-call engineer looks for first: exits, OOM
 * kills, compensations, stalls past the caller's deadline, retries served from the
 * ledger, recoveries after a crash, and exec sessions.
 */

/** A step that took at least this long is drawn as slow. */
export const SLOW_STEP_MS = 1_000;

export type BarKind = 'step' | 'slow' | 'failed' | 'running' | 'idle';

/** The state a lifecycle event leaves its container or pod in: `running` bands are green, the rest grey. */
const STATE_AFTER: Partial<Record<LedgerEvent['type'], { label: string; kind: 'running' | 'idle' } | null>> = {
  ContainerCreated: { label: 'created', kind: 'idle' },
  ContainerStarted: { label: 'running', kind: 'running' },
  ContainerExited: { label: 'exited', kind: 'idle' },
  ContainerRemoved: null,
  SandboxReady: { label: 'ready', kind: 'running' },
  SandboxStopped: { label: 'not ready', kind: 'idle' },
  SandboxRemoved: null,
  Compensated: null,
};
export type MarkKind = 'exit' | 'oom' | 'compensated' | 'stalled' | 'retry' | 'recovered' | 'exec';

export interface Bar {
  label: string;
  startMs: number;
  endMs: number;
  kind: BarKind;
  /** Hover text: what the event says. */
  detail: string;
}

export interface Mark {
  kind: MarkKind;
  atMs: number;
  label: string;
  detail: string;
}

export interface Lane {
  stream: string;
  kind: 'container' | 'sandbox';
  id: string;
  name: string;
  /** A container's pod sandbox id, when its reservation is in the events. */
  podId?: string;
  /** The node whose log holds it (a fleet report draws several). */
  node?: string;
  bars: Bar[];
  marks: Mark[];
}

export interface Anomaly {
  at: string;
  stream: string;
  name: string;
  what: MarkKind;
  detail: string;
}

export interface Picture {
  title: string;
  fromMs: number;
  toMs: number;
  lanes: Lane[];
  anomalies: Anomaly[];
  countsByType: Array<[type: string, count: number]>;
}

/** Builds the picture of `events` (any order of streams, seq order within each). */
export function picture(title: string, events: readonly LedgerEvent[]): Picture {
  const lanes = new Map<string, Lane>();
  /** Each lane's node: a fleet report (events of several nodes) names it in the lane. */
  const nodeOf = new Map<string, string>();
  const anomalyNodes: string[] = [];
  const previous = new Map<string, number>();
  const inSaga = new Set<string>();
  const states = new Map<string, { label: string; kind: 'running' | 'idle'; at: number }>();
  const anomalies: Anomaly[] = [];
  const counts = new Map<string, number>();
  for (const e of events) {
    counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
    const { kind, id } = parseStream(e.stream);
    if (kind !== 'container' && kind !== 'sandbox') continue;
    const at = Date.parse(e.at);
    // A lane per node and stream: two nodes may hold the same id.
    const key = `${e.node}\0${e.stream}`;
    const lane = lanes.get(key) ?? newLane(e.stream, kind, id);
    lanes.set(key, lane);
    lane.node = e.node;
    nodeOf.set(key, e.node);
    if (SAGA_BEGIN.has(e.type) && 'name' in e.data) lane.name = String(e.data.name);
    if (e.type === 'NameReserved') lane.podId = e.data.sandboxId;
    const from = previous.get(key) ?? at;
    previous.set(key, at);
    const detail = `seq ${e.seq} ${e.type}: ${summarize(e)}`;
    if (SAGA_BEGIN.has(e.type)) inSaga.add(key);
    else if (inSaga.has(key)) {
      const kind = e.type === 'Compensated' ? 'failed' : at - from >= SLOW_STEP_MS ? 'slow' : 'step';
      lane.bars.push({ label: e.type, startMs: from, endMs: at, kind, detail });
      if (SAGA_END.has(e.type)) inSaga.delete(key);
    }
    const next = STATE_AFTER[e.type];
    if (next !== undefined) {
      const current = states.get(key);
      if (current) lane.bars.unshift(stateBar(current, at));
      if (next) states.set(key, { ...next, at });
      else states.delete(key);
    }
    const mark = markOf(e);
    if (mark) {
      lane.marks.push({ ...mark, atMs: at, detail });
      if (mark.kind !== 'exec' && !(mark.kind === 'exit' && mark.label === 'exit 0')) anomalyNodes.push(e.node);
      anomalies.push({
        at: e.at,
        stream: e.stream,
        name: lane.name,
        what: mark.kind,
        detail: `${mark.label}: ${summarize(e)}`,
      });
    }
  }
  const times = events.map((e) => Date.parse(e.at));
  const fromMs = times.length ? Math.min(...times) : 0;
  const toMs = times.length ? Math.max(...times) : 0;
  // A container or pod still in a state at the end of the window: its band reaches the end.
  for (const [key, state] of states) lanes.get(key)?.bars.unshift(stateBar(state, toMs));
  if (new Set(nodeOf.values()).size > 1) {
    for (const [key, lane] of lanes) lane.name = `${nodeOf.get(key)}: ${lane.name}`;
    for (const [i, a] of anomalies.entries()) a.name = `${anomalyNodes[i]}: ${a.name}`;
  }
  return {
    title,
    fromMs,
    toMs,
    lanes: podOrder([...lanes.values()]),
    anomalies,
    countsByType: [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)),
  };
}

function stateBar(state: { label: string; kind: 'running' | 'idle'; at: number }, endMs: number): Bar {
  return { label: state.label, startMs: state.at, endMs, kind: state.kind, detail: state.label };
}

function newLane(stream: string, kind: 'container' | 'sandbox', id: string): Lane {
  return { stream, kind, id, name: shortId(id), bars: [], marks: [] };
}

function markOf(e: LedgerEvent): { kind: MarkKind; label: string } | undefined {
  switch (e.type) {
    case 'ContainerExited':
      return e.data.reason === 'OOMKilled'
        ? { kind: 'oom', label: 'OOM killed' }
        : { kind: 'exit', label: `exit ${e.data.exitCode}` };
    case 'Compensated':
      return { kind: 'compensated', label: `compensated at ${e.data.failedStep}` };
    case 'OperationStalled':
      return { kind: 'stalled', label: `stalled in ${e.data.step}` };
    case 'RetryServed':
      return { kind: 'retry', label: 'retry served from the ledger' };
    case 'RecoveryDecided':
      return { kind: 'recovered', label: 'recovered after a crash' };
    case 'ExecRan':
      return { kind: 'exec', label: `exec ${e.data.cmd.join(' ').slice(0, 40)}` };
    default:
      return undefined;
  }
}

/** Each pod sandbox followed by its containers, pods by first activity; containers of no pod shown last. */
function podOrder(lanes: Lane[]): Lane[] {
  const start = (l: Lane): number => Math.min(...l.bars.map((b) => b.startMs), Number.MAX_SAFE_INTEGER);
  const byStart = (a: Lane, b: Lane): number => start(a) - start(b);
  const pods = lanes.filter((l) => l.kind === 'sandbox').sort(byStart);
  const containers = lanes.filter((l) => l.kind === 'container').sort(byStart);
  const placed = new Set<Lane>();
  const out: Lane[] = [];
  for (const pod of pods) {
    out.push(pod);
    for (const c of containers.filter((c) => c.podId === pod.id && c.node === pod.node)) {
      out.push(c);
      placed.add(c);
    }
  }
  return [...out, ...containers.filter((c) => !placed.has(c))];
}
