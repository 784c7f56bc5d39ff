import type { LedgerEvent } from '../domain/events.js';
import { parseStream } from '../domain/ids.js';

/*
 * Which CRI container events (GetContainerEvents, kubelet's evented PLEG) a log event
 * stands for. Containers: ContainerCreated, ContainerStarted, ContainerExited (the task
 * ended: what containerd reports as stopped) and ContainerRemoved. Pod sandboxes, as
 * containerd's CRI reports them, under the sandbox id: SandboxReady is the pod created
 * and started, SandboxStopped stopped, SandboxRemoved deleted. Everything else (saga
 * steps, compensations, images) is no CRI event.
 */

export type CriContainerEventType =
  | 'CONTAINER_CREATED_EVENT'
  | 'CONTAINER_STARTED_EVENT'
  | 'CONTAINER_STOPPED_EVENT'
  | 'CONTAINER_DELETED_EVENT';

export interface CriContainerEvent {
  /** The container id, or the sandbox id for a pod's own events. */
  id: string;
  kind: 'container' | 'sandbox';
  type: CriContainerEventType;
}

const CONTAINER_EVENTS: Partial<Record<LedgerEvent['type'], CriContainerEventType>> = {
  ContainerCreated: 'CONTAINER_CREATED_EVENT',
  ContainerStarted: 'CONTAINER_STARTED_EVENT',
  ContainerExited: 'CONTAINER_STOPPED_EVENT',
  ContainerRemoved: 'CONTAINER_DELETED_EVENT',
};

const SANDBOX_EVENTS: Partial<Record<LedgerEvent['type'], CriContainerEventType[]>> = {
  SandboxReady: ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT'],
  SandboxStopped: ['CONTAINER_STOPPED_EVENT'],
  SandboxRemoved: ['CONTAINER_DELETED_EVENT'],
};

export function criContainerEvents(event: LedgerEvent): CriContainerEvent[] {
  const { kind, id } = parseStream(event.stream);
  if (kind === 'container') {
    const type = CONTAINER_EVENTS[event.type];
    return type ? [{ id, kind, type }] : [];
  }
  if (kind === 'sandbox') return (SANDBOX_EVENTS[event.type] ?? []).map((type) => ({ id, kind, type }));
  return [];
}
