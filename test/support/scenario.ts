import type { NewEvent } from '../../src/domain/events.js';
import { container, ev, sandbox, streams } from './fixtures.js';

/** One append of a generated history: stream, expected version, events. */
export interface ScenarioAppend {
  stream: string;
  expected: number;
  events: NewEvent[];
}

/** A small deterministic PRNG (mulberry32), so a failing scenario replays exactly. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A node's history: `pods` sandboxes, each with a few containers that are created
 * (some compensated mid-saga), started, exited, stopped and removed; `teardownRate` of
 * the pods (default half) are torn down; a few sagas are left in flight. With `sessions`,
 * some containers get an exec session and some pods a port forward.
 * Streams interleave as they would on a node.
 */
export function generateScenario(options: {
  pods: number;
  seed?: number;
  containersPerPod?: number;
  teardownRate?: number;
  /**
   * Give some containers an exec session and some pods a port forward. Off by default,
   * so the histories benchmarks and older tests generate stay as they were.
   */
  sessions?: boolean;
  /** With sessions: leave about one in ten open (a service ends them at its next start). */
  openSessions?: boolean;
  /**
   * Number the pods from here (default 0), so histories generated a block at a time
   * (the restart benchmark's millions of events) never reuse a stream or a name.
   */
  firstPod?: number;
  /** Leave the last few sagas in flight (default true). */
  leaveInFlight?: boolean;
}): ScenarioAppend[] {
  const ends = (roll: number): boolean => !options.openSessions || roll < 0.9;
  const rnd = random(options.seed ?? 1);
  const perPod = options.containersPerPod ?? 3;
  const versions = new Map<string, number>();
  const lanes: ScenarioAppend[][] = [];
  const push = (lane: ScenarioAppend[], stream: string, events: NewEvent[]) => {
    const expected = versions.get(stream) ?? 0;
    versions.set(stream, expected + events.length);
    lane.push({ stream, expected, events });
  };
  const first = options.firstPod ?? 0;
  for (let i = 0; i < options.pods; i++) {
    const p = first + i;
    const lane: ScenarioAppend[] = [];
    const pod = sandbox(`pod${p}`, `pod${p % 50}_ns_uid-${p}_0`);
    const podStream = streams.sandbox(pod);
    push(lane, podStream, [ev.sandboxReserved(pod, `req-pod-${p}`)]);
    if (rnd() < 0.05) {
      push(lane, podStream, [ev.compensated(pod.name, 'SandboxReady', `req-pod-${p}`)]);
      lanes.push(lane);
      continue;
    }
    push(lane, podStream, [ev.sandboxReady()]);
    // With sessions, some pods are port-forwarded to.
    if (options.sessions && rnd() < 0.2) {
      push(lane, podStream, [ev.portForwardStarted(`pf-${p}`)]);
      if (ends(rnd())) push(lane, podStream, [ev.portForwardEnded(`pf-${p}`)]);
    }
    const torndown = rnd() < (options.teardownRate ?? 0.5);
    for (let k = 0; k < perPod; k++) {
      const label = `c${p}-${k}`;
      const c = { ...container(label, `pod${p}`, `app${k}_${pod.name}`), sandboxId: pod.id };
      const stream = streams.container(c);
      const corr = `req-${label}`;
      push(lane, stream, [ev.nameReserved(c, corr)]);
      const roll = rnd();
      const last = i === options.pods - 1 && k === perPod - 1;
      if ((options.leaveInFlight ?? true) && (last || (roll < 0.02 && i > options.pods - 20))) continue; // left in flight
      push(lane, stream, [ev.specGenerated(corr)]);
      if (roll < 0.1) {
        push(lane, stream, [ev.compensated(c.name, 'SnapshotPrepared', corr)]);
        continue;
      }
      push(lane, stream, [ev.snapshotPrepared(c, corr)]);
      push(lane, stream, [ev.containerCreated(1, corr)]);
      push(lane, stream, [ev.containerStarted()]);
      // With sessions, some running containers get an exec session.
      if (options.sessions && rnd() < 0.3) {
        push(lane, stream, [ev.execStarted(`exec-${label}`)]);
        if (ends(rnd())) push(lane, stream, [ev.execEnded(`exec-${label}`)]);
      }
      if (rnd() < 0.7 || torndown) push(lane, stream, [ev.containerExited(rnd() < 0.8 ? 0 : 1)]);
      if (torndown) {
        push(lane, stream, [ev.containerStopped()]);
        push(lane, stream, [ev.containerRemoved(c)]);
      }
    }
    if (torndown) {
      push(lane, podStream, [ev.sandboxStopped()]);
      push(lane, podStream, [ev.sandboxRemoved(pod)]);
    }
    lanes.push(lane);
  }
  // Interleave a few lanes at a time, as concurrent pods would.
  const out: ScenarioAppend[] = [];
  const width = 4;
  for (let start = 0; start < lanes.length; start += width) {
    const group = lanes.slice(start, start + width).map((l) => [...l]);
    while (group.some((l) => l.length > 0)) {
      const live = group.filter((l) => l.length > 0);
      out.push(live[Math.floor(rnd() * live.length)]!.shift()!);
    }
  }
  return out;
}
