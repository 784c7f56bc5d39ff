import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import type { Ledger } from '../../commands/ledger.js';
import { LedgerClosedError } from '../../domain/errors.js';
import { decodeEvent, encodeEvent } from '../../domain/events.js';
import { disabledRelayStatus, type RelayStatus } from '../bus/nats-relay-options.js';
import { ServiceShuttingDownError, toServiceError } from '../grpc/status.js';
import { writeWithBackpressure } from '../grpc/stream-write.js';
import type { SocketService } from '../grpc/socket-server.js';
import { prunedReport, type PrunedRecord } from '../eventlog/pruned-report.js';
import { compileFilter, type CompiledFilter } from './event-filter.js';
import { ledgerServiceClass } from './ledger-definition.js';
import {
  filterFromWire,
  type EventRecord,
  type WirePrunedRequest,
  type WirePrunedResponse,
  type WireReadRequest,
  type WireStatus,
} from './wire.js';

export interface LedgerServiceOptions {
  ledger: Ledger;
  node: string;
  /** The running relay; absent when no NATS URL is configured. */
  relay?: { status(): RelayStatus };
  /** Retention's record of what it removed (the LevelDB log), for Pruned. */
  pruned?: PrunedRecord;
  /** The retention policy the service runs with, for Pruned. */
  retention?: { maxAgeMs: number; maxBytes: number };
  /** The JetStream stream the relay publishes to, for Status. */
  natsStream?: string;
  /** The containerd address and namespace the service works on, for Status. */
  containerd?: { address: string; namespace: string };
  /** Where the service keeps its snapshots of the projections (unset: they are off), for Status. */
  snapshotDir?: string;
  now?: () => number;
}

type Stream = ServerWritableStream<WireReadRequest, EventRecord>;

/**
 * `cri_ledger.v1.Ledger`: read-only access to the log and projections of the running
 * service. Events go out as the stored JSON, byte for byte, so a client sees exactly
 * what the log (and NATS) holds.
 */
export function createLedgerService(options: LedgerServiceOptions): SocketService {
  const { ledger } = options;
  const log = ledger.log;
  const now = options.now ?? Date.now;
  const startedAt = new Date(now()).toISOString();
  // Live calls, aborted when the server starts closing so Follow streams end promptly.
  const calls = new Set<AbortController>();
  let draining = false;

  const track = (call: Stream): AbortController => {
    const controller = new AbortController();
    if (draining) controller.abort();
    calls.add(controller);
    call.on('cancelled', () => controller.abort());
    return controller;
  };

  const send = (call: Stream, record: EventRecord, signal: AbortSignal): Promise<void> =>
    writeWithBackpressure(call, record, signal);

  /** Sends the stored records from `filter.fromSeq` to `toSeq`; returns the next seq, or undefined when the filter ended. */
  const sendStored = async (
    call: Stream,
    filter: CompiledFilter,
    toSeq: number,
    signal: AbortSignal,
  ): Promise<number | undefined> => {
    let next = filter.fromSeq;
    for await (const record of log.readRecords({ fromSeq: next, toSeq: Math.min(toSeq, filter.toSeq) })) {
      if (signal.aborted) return next;
      next = record.seq + 1;
      // An unfiltered read does not decode, so a client can see (and verify) any record.
      if (!filter.passesAll) {
        const event = decodeEvent(record.json, record.seq);
        if (filter.ended(event)) return undefined;
        if (!filter.matches(event)) continue;
      }
      await send(call, { seq: record.seq, json: record.json }, signal);
    }
    return next > filter.toSeq ? undefined : next;
  };

  const finish = (call: Stream, controller: AbortController, error?: unknown): void => {
    calls.delete(controller);
    if (call.cancelled) return;
    if (error !== undefined) call.emit('error', toServiceError(error));
    else if (controller.signal.aborted && draining) call.emit('error', toServiceError(new ServiceShuttingDownError()));
    else call.end();
  };

  const implementation = {
    async ReadEvents(call: Stream): Promise<void> {
      const controller = track(call);
      try {
        const filter = compileFilter(filterFromWire(call.request));
        await sendStored(call, filter, log.head(), controller.signal);
        finish(call, controller);
      } catch (error) {
        finish(call, controller, error);
      }
    },

    async Follow(call: Stream): Promise<void> {
      const controller = track(call);
      try {
        const filter = compileFilter(filterFromWire(call.request));
        // Catch up from the store (exact bytes), then go live through the log's follow,
        // which picks up at `next` with no gap and no duplicate.
        const next = await sendStored(call, filter, log.head(), controller.signal);
        if (next !== undefined && !controller.signal.aborted) {
          let ended = false;
          for await (const event of log.follow(next, { signal: controller.signal })) {
            if (filter.ended(event)) {
              ended = true;
              break;
            }
            if (!filter.matches(event)) continue;
            // Live events are the objects the log just encoded and stored: same bytes.
            await send(call, { seq: event.seq, json: encodeEvent(event) }, controller.signal);
          }
          // follow() only returns on its own when the log closes under it.
          if (!ended && !controller.signal.aborted) throw new LedgerClosedError();
        }
        finish(call, controller);
      } catch (error) {
        finish(call, controller, error);
      }
    },

    async Status(_call: ServerUnaryCall<unknown, WireStatus>, callback: sendUnaryData<WireStatus>): Promise<void> {
      try {
        callback(null, await status());
      } catch (error) {
        callback(toServiceError(error));
      }
    },

    async Pruned(
      call: ServerUnaryCall<WirePrunedRequest, WirePrunedResponse>,
      callback: sendUnaryData<WirePrunedResponse>,
    ): Promise<void> {
      try {
        const r = call.request;
        const report = options.pruned
          ? await prunedReport(options.pruned, r, options.retention)
          : await prunedReport(NOTHING_PRUNED, r);
        callback(null, {
          ...report,
          streamsAsked: report.streamsAsked.map((t) => ({ ...t, name: t.name ?? '' })),
        });
      } catch (error) {
        callback(toServiceError(error));
      }
    },
  };

  const status = async (): Promise<WireStatus> => {
    const head = log.head();
    const relay = options.relay ? options.relay.status() : await disabledRelayStatus(log);
    const p = ledger.projections;
    const operations = p.operationsWithAge(now()).map(({ stalled, ...op }) => ({
      ...op,
      stalledStep: stalled?.step ?? '',
      stalledAt: stalled?.at ?? '',
      stalledDeadline: stalled?.deadline ?? '',
    }));
    return {
      node: options.node,
      head,
      headAt: await headAt(head),
      relay: {
        enabled: relay.enabled,
        connected: relay.connected,
        cursor: relay.cursor,
        lag: relay.lag,
        lastError: relay.lastError ?? '',
        lastPublishAt: relay.lastPublishAt ?? '',
        stream: options.relay ? (options.natsStream ?? '') : '',
        server: relay.server ?? '',
        servers: relay.servers ?? [],
        streamLimits: relay.streamLimits ?? null,
        resendHorizonMs: relay.resendHorizonMs ?? 0,
        warnings: relay.warnings ?? [],
      },
      counts: p.counts(),
      operations,
      startedAt,
      containerd: options.containerd ?? null,
      snapshotDir: options.snapshotDir ?? '',
    };
  };

  const headAt = async (head: number): Promise<string> => {
    if (head === 0) return '';
    for await (const record of log.readRecords({ fromSeq: head, toSeq: head }))
      return decodeEvent(record.json, record.seq).at;
    return '';
  };

  return {
    definition: ledgerServiceClass().service,
    implementation,
    drain() {
      draining = true;
      for (const controller of calls) controller.abort();
    },
  };
}

/** The record of a log retention never touched. */
const NOTHING_PRUNED: PrunedRecord = {
  head: () => 0,
  prunedSummary: () => undefined,
  prunedWithin: () => ({ ranges: [], events: 0 }),
  tombstone: async () => undefined,
  tombstonesNamed: async () => [],
};
