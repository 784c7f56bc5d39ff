import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Ledger } from '../../commands/ledger.js';
import { CriLedgerError, SubscriberTooSlowError } from '../../domain/errors.js';
import type { LedgerEvent } from '../../domain/events.js';
import { criContainerEvents } from '../../projections/container-events.js';
import type { ReadModel } from '../../projections/read-model.js';
import type { ContainerRecord } from '../../projections/container-store.js';
import type { SandboxRecord } from '../../projections/sandbox-store.js';
import { ServiceShuttingDownError, toServiceError } from '../grpc/status.js';
import { writeWithBackpressure } from '../grpc/stream-write.js';
import type { ContainerEventResponse } from './generated/runtime/v1/ContainerEventResponse.js';
import { containerStatusMessage, nanos, sandboxStatusMessage, visibleContainers } from './cri-views.js';

/*
 * GetContainerEvents, for kubelet's evented PLEG, served from the log. Each subscriber
 * starts at "now" with its own copy of the container and sandbox read models and moves
 * them on event by event as it reads, so every response carries the pod's statuses as
 * they stood right after that event, not as they are when the response is written.
 *
 * containerd's CRI drops events when a subscriber is slow. Here nothing is dropped: the
 * subscriber reads the log at its own pace (the log's follower falls back to reading the
 * store when it is behind, so memory does not grow with the lag). Once it is more than
 * `maxLagEvents` behind the head it is ended with RESOURCE_EXHAUSTED, and kubelet falls
 * back to relisting, as it does when containerd's buffer overflows.
 */

export interface ContainerEventsOptions {
  ledger: Ledger;
  maxLagEvents: number;
  logger: Logger;
}

type Call = ServerWritableStream<unknown, ContainerEventResponse>;

export function containerEventsService(o: ContainerEventsOptions): {
  GetContainerEvents: (call: Call) => void;
  drain: () => void;
} {
  const live = new Set<AbortController>();
  let draining = false;
  const serve = async (call: Call): Promise<void> => {
    const stop = new AbortController();
    live.add(stop);
    if (draining) stop.abort(new ServiceShuttingDownError());
    call.on('cancelled', () => stop.abort());
    const log = o.ledger.log;
    const containers = o.ledger.projections.containers.copy();
    const sandboxes = o.ledger.projections.sandboxes.copy();
    let sent = log.head();
    // Checked on every commit: a subscriber stuck on a full transport still gets ended.
    const unsubscribe = log.onCommit(() => {
      if (log.head() - sent > o.maxLagEvents) {
        stop.abort(new SubscriberTooSlowError(`the subscriber is more than ${o.maxLagEvents} events behind; relist`));
      }
    });
    try {
      for await (const event of log.follow(sent + 1, { signal: stop.signal })) {
        for (const response of responses(event, containers, sandboxes))
          await writeWithBackpressure(call, response, stop.signal);
        sent = event.seq;
        if (stop.signal.aborted) break;
      }
    } catch (error) {
      if (!stop.signal.aborted) {
        o.logger.warn({ err: error }, 'GetContainerEvents ended');
        call.emit('error', toServiceError(error));
        return;
      }
    } finally {
      unsubscribe();
      live.delete(stop);
    }
    const reason: unknown = stop.signal.reason;
    // A status after the responses already queued: a paused client sees it once it reads them.
    if (reason instanceof CriLedgerError) call.emit('error', toServiceError(reason));
    else call.end();
  };
  return {
    GetContainerEvents: (call) => {
      serve(call).catch((error: unknown) => {
        o.logger.error({ err: error }, 'GetContainerEvents failed');
        call.emit('error', toServiceError(error));
      });
    },
    drain: () => {
      draining = true;
      for (const stop of live) stop.abort(new ServiceShuttingDownError());
    },
  };
}

/**
 * Moves the read models on by `event` and answers the CRI events it stands for. The pod
 * is looked up before the event (a removed container no longer says its pod after it);
 * a removed pod's status is its last one, so kubelet always gets a pod status.
 */
function responses(
  event: LedgerEvent,
  containers: ReadModel<ContainerRecord>,
  sandboxes: ReadModel<SandboxRecord>,
): ContainerEventResponse[] {
  const cris = criContainerEvents(event);
  const podIds = cris.map((cri) => (cri.kind === 'sandbox' ? cri.id : containers.get(cri.id)?.sandboxId));
  const podsBefore = podIds.map((id) => (id === undefined ? undefined : sandboxes.get(id)));
  containers.apply(event);
  sandboxes.apply(event);
  return cris.map((cri, i) => {
    const podId = podIds[i] ?? containers.get(cri.id)?.sandboxId;
    const pod = (podId === undefined ? undefined : sandboxes.get(podId)) ?? podsBefore[i];
    const members = visibleContainers([...containers.values()].filter((c) => c.sandboxId === podId));
    return {
      containerId: cri.id,
      containerEventType: cri.type,
      createdAt: nanos(event.at),
      podSandboxStatus: pod ? sandboxStatusMessage(pod) : null,
      containersStatuses: members.map(containerStatusMessage),
    };
  });
}
