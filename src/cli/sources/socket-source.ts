import { stat } from 'node:fs/promises';
import { status as Status } from '@grpc/grpc-js';
import { RemoteCallError } from '../../adapters/grpc/status.js';
import { LedgerClient } from '../../adapters/ledger-api/ledger-client.js';
import type { WireStatus } from '../../adapters/ledger-api/wire.js';
import { CriLedgerError } from '../../domain/errors.js';
import {
  sourced,
  type EventFilter,
  type EventSource,
  type LedgerStatus,
  type PrunedQuery,
  type PrunedReport,
  type SourcedEvent,
  type SourcedRecord,
} from './event-source.js';

/** The service is not there to answer; says what to do instead. */
export class ServiceUnreachableError extends CriLedgerError {
  constructor(
    readonly socketPath: string,
    detail: string,
  ) {
    super(
      `cannot reach the cri-ledger service at ${socketPath} (${detail}); ` +
        "is it running? Read a stopped service's log with --db, or another machine's events with --nats",
    );
  }
}

/** Reads through the running service's `cri_ledger.v1.Ledger` API: the default source. */
export class SocketSource implements EventSource {
  readonly description: string;

  private constructor(
    private readonly socketPath: string,
    private readonly client: LedgerClient,
  ) {
    this.description = `socket ${socketPath}`;
  }

  static async open(socketPath: string): Promise<SocketSource> {
    try {
      const stats = await stat(socketPath);
      if (!stats.isSocket()) throw new ServiceUnreachableError(socketPath, 'not a socket');
    } catch (error) {
      if (error instanceof ServiceUnreachableError) throw error;
      throw new ServiceUnreachableError(
        socketPath,
        (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such socket' : (error as Error).message,
      );
    }
    return new SocketSource(socketPath, LedgerClient.connect(socketPath));
  }

  async *readEvents(filter: EventFilter = {}): AsyncIterable<SourcedEvent> {
    for await (const record of this.guard(this.client.readEvents(filter))) yield sourced(record);
  }

  readRecords(): AsyncIterable<SourcedRecord> {
    return this.guard(this.client.readEvents({}));
  }

  async *follow(filter: EventFilter, signal?: AbortSignal): AsyncIterable<SourcedEvent> {
    for await (const record of this.guard(this.client.follow(filter, signal))) yield sourced(record);
  }

  async status(): Promise<LedgerStatus> {
    return toLedgerStatus(await this.unreachable(() => this.client.status()), this.description);
  }

  async pruned(query: PrunedQuery): Promise<PrunedReport | undefined> {
    const r = await this.unreachable(() =>
      this.client.pruned({
        fromSeq: query.fromSeq ?? 0,
        toSeq: query.toSeq ?? 0,
        streams: [...(query.streams ?? [])],
        names: [...(query.names ?? [])],
      }),
    );
    if (!r) return undefined;
    return {
      ...r,
      streamsAsked: r.streamsAsked.map(({ name, ...t }) => (name ? { ...t, name } : t)),
    };
  }

  async size(): Promise<number> {
    return (await this.unreachable(() => this.client.status())).head;
  }

  async close(): Promise<void> {
    this.client.close();
  }

  private async *guard<T>(records: AsyncIterable<T>): AsyncIterable<T> {
    try {
      yield* records;
    } catch (error) {
      throw this.explain(error);
    }
  }

  private async unreachable<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.explain(error);
    }
  }

  /** A connection failure becomes advice; a status from the service is kept as it is. */
  private explain(error: unknown): unknown {
    if (
      error instanceof RemoteCallError &&
      error.code === Status.UNAVAILABLE &&
      /connect|No connection/i.test(error.details)
    ) {
      return new ServiceUnreachableError(this.socketPath, error.details);
    }
    return error;
  }
}

function toLedgerStatus(s: WireStatus, source: string): LedgerStatus {
  const relay = s.relay;
  const out: LedgerStatus = {
    kind: 'ledger',
    source,
    node: s.node,
    head: s.head,
    relay: {
      running: true,
      enabled: relay?.enabled ?? false,
      connected: relay?.connected ?? false,
      cursor: relay?.cursor ?? 0,
      lag: relay?.lag ?? 0,
    },
    counts: s.counts ?? {
      containers: 0,
      sandboxes: 0,
      containerNames: 0,
      sandboxNames: 0,
      operationsInFlight: 0,
      openSessions: 0,
    },
    operations: s.operations.map((op) => ({
      stream: op.stream,
      operation: op.operation,
      name: op.name,
      correlationId: op.correlationId,
      startedAt: op.startedAt,
      startedSeq: op.startedSeq,
      lastStep: op.lastStep,
      ageMs: op.ageMs,
      ...(op.stalledStep ? { stalled: { step: op.stalledStep, at: op.stalledAt, deadline: op.stalledDeadline } } : {}),
    })),
  };
  if (s.headAt) out.headAt = s.headAt;
  if (s.startedAt) out.startedAt = s.startedAt;
  if (s.containerd?.namespace) out.containerd = { address: s.containerd.address, namespace: s.containerd.namespace };
  if (s.snapshotDir) out.snapshotDir = s.snapshotDir;
  if (relay?.lastError) out.relay.lastError = relay.lastError;
  if (relay?.lastPublishAt) out.relay.lastPublishAt = relay.lastPublishAt;
  if (relay?.stream) out.relay.stream = relay.stream;
  if (relay?.server) out.relay.server = relay.server;
  if (relay?.servers.length) out.relay.servers = relay.servers;
  if (relay?.streamLimits) out.relay.streamLimits = relay.streamLimits;
  if (relay?.resendHorizonMs) out.relay.resendHorizonMs = relay.resendHorizonMs;
  if (relay?.warnings.length) out.relay.warnings = relay.warnings;
  return out;
}
