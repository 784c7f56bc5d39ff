import { Ledger } from '../../src/commands/ledger.js';
import { KeyedLock } from '../../src/commands/keyed-lock.js';
import type { ExecProcesses, SessionPayload, StreamingSessions } from '../../src/commands/ports.js';
import type { SessionKind } from '../../src/domain/events.js';
import type { NewEvent } from '../../src/domain/events.js';
import { container, ev, sandbox, streams, time, type ContainerRef } from './fixtures.js';
import { MemoryEventLog } from './memory-event-log.js';

/** The streaming server as a fake: remembers each registration and answers a URL naming it. */
export class FakeStreaming implements StreamingSessions {
  readonly registered: Array<{ kind: SessionKind; payload: SessionPayload }> = [];
  register(kind: SessionKind, payload: SessionPayload): string {
    this.registered.push({ kind, payload });
    return `http://127.0.0.1:10010/${kind}/token-${this.registered.length}`;
  }
}

/** Exec processes left by a previous process: kills them, or fails for the ids told to. */
export class FakeExecProcesses implements ExecProcesses {
  readonly killed: Array<{ containerId: string; execId: string }> = [];
  readonly failFor = new Set<string>();
  async kill(containerId: string, execId: string): Promise<void> {
    if (this.failFor.has(execId)) throw new Error('containerd is unavailable');
    this.killed.push({ containerId, execId });
  }
}

export const pod = sandbox('pod1', 'web_default_uid-1_0');
export const hostPod = sandbox('hostpod', 'host_default_uid-2_0');

/** A container's CreateContainer and start, as the log holds them; `created` patches ContainerCreated's data. */
export function runningContainer(
  label: string,
  created: Partial<NewEvent<'ContainerCreated'>['data']> = {},
  o: { started?: boolean } = {},
): { ref: ContainerRef; events: Array<[string, NewEvent]> } {
  const ref = { ...container(label, 'pod1', `${label}_web_default_uid-1_0`), sandboxId: pod.id };
  const stream = streams.container(ref);
  const base = ev.containerCreated();
  const events: Array<[string, NewEvent]> = [
    [stream, ev.nameReserved(ref)],
    [stream, ev.specGenerated()],
    [stream, ev.snapshotPrepared(ref)],
    [stream, { ...base, data: { ...base.data, ...created } }],
  ];
  if (o.started !== false) events.push([stream, ev.containerStarted()]);
  return { ref, events };
}

/** A ledger on an in-memory log holding `pod` (READY), `hostPod` (READY, host network) and the given appends. */
export async function streamingWorld(...appends: Array<Array<[string, NewEvent]>>) {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  const ready = ev.sandboxReady();
  await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ready]);
  const host = ev.sandboxReserved(hostPod);
  await ledger.append(streams.sandbox(hostPod), 0, [
    { ...host, data: { ...host.data, hostNetwork: true } },
    { ...ready, data: { ...ready.data, ip: '', netnsPath: '' } },
  ]);
  for (const events of appends) for (const [stream, event] of events) await ledger.append(stream, 'any', [event]);
  const streaming = new FakeStreaming();
  const deps = { projections: ledger.projections, streaming };
  const records = { ledger, locks: new KeyedLock() };
  return { log, ledger, streaming, deps, records, head: () => log.head() };
}

export const START = { transport: 'spdy' as const, protocol: 'v5.channel.k8s.io', startedAt: time(10) };
