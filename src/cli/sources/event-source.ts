import type { EventFilter } from '../../adapters/ledger-api/event-filter.js';
import type { PrunedQuery, PrunedReport } from '../../adapters/eventlog/pruned-report.js';
import { decodeEvent, type LedgerEvent } from '../../domain/events.js';

export type { PrunedQuery, PrunedReport };

export type { EventFilter };

/** One event as a source delivered it: the stored JSON, byte for byte, and its decoding. */
export interface SourcedEvent {
  seq: number;
  json: string;
  event: LedgerEvent;
  /** The node whose relay published it (the subject's node token); set by the NATS source. */
  node?: string;
}

/** One record before decoding. `where` locates it when its seq cannot be trusted (NATS). */
export interface SourcedRecord {
  seq: number;
  json: string;
  where?: string;
}

/** An operation in flight and how old it is. */
export interface InFlight {
  stream: string;
  operation: string;
  name: string;
  correlationId: string;
  startedAt: string;
  startedSeq: number;
  lastStep: string;
  ageMs: number;
  /** The step running when the caller's deadline passed, if it did (OperationStalled). */
  stalled?: { step: string; at: string; deadline: string };
}

/** Where a node's log stands (the socket's Status RPC, or a stopped log read directly). */
export interface LedgerStatus {
  kind: 'ledger';
  source: string;
  node: string;
  head: number;
  headAt?: string;
  /** `running` is false for a stopped service's log: the relay's state is unknown then. */
  relay: {
    running: boolean;
    enabled?: boolean;
    connected?: boolean;
    cursor: number;
    lag: number;
    lastError?: string;
    lastPublishAt?: string;
    stream?: string;
    /** host:port of the NATS server the relay is on now. */
    server?: string;
    servers?: string[];
    streamLimits?: { replicas: number; maxAgeMs: number; maxBytes: number; duplicateWindowMs: number };
    resendHorizonMs?: number;
    warnings?: string[];
  };
  counts: {
    containers: number;
    sandboxes: number;
    containerNames: number;
    sandboxNames: number;
    operationsInFlight: number;
    /** Streaming sessions started and not ended (0 from a service before they existed). */
    openSessions: number;
  };
  operations: InFlight[];
  startedAt?: string;
  /** The containerd the running service works on; unknown for a stopped service's log. */
  containerd?: { address: string; namespace: string };
  /** Where the running service keeps its snapshots of the projections; unset when they are off (or unknown). */
  snapshotDir?: string;
}

/** Where a JetStream stream stands, and this node's part of it. */
export interface StreamStatus {
  kind: 'stream';
  source: string;
  stream: string;
  messages: number;
  bytes: number;
  first?: { seq: number; at: string };
  last?: { seq: number; at: string };
  node: string;
  nodeSubjects: string;
  nodeMessages: number;
  nodeSubjectCount: number;
  /** The last event this node published, if the server can tell. */
  nodeHead?: { seq: number; at: string };
  /** With several nodes (`--node '*'` or a list): each one's part of the stream. */
  nodes?: Array<{ node: string; messages: number; head?: { seq: number; at: string } }>;
  /** host:port of the server the command read from. */
  server?: string;
  limits?: { replicas: number; maxAgeMs: number; maxBytes: number; duplicateWindowMs: number };
  /** The RAFT group of a replicated stream: its leader and each replica's state. */
  cluster?: {
    name?: string;
    leader?: string;
    replicas: Array<{ name: string; current: boolean; lag?: number; offline?: boolean }>;
  };
  /** A relay's worst-case re-send with its default settings, and what the duplicate window makes of it. */
  resendHorizonMs?: number;
  warnings?: string[];
}

export type SourceStatus = LedgerStatus | StreamStatus;

/**
 * Where the CLI reads events from: the running service's socket, a stopped service's
 * LevelDB directory, or the JetStream stream. Every command is written against this.
 */
export interface EventSource {
  /** Says what is being read, for messages: `socket /run/cri-ledger/cri-ledger.sock`. */
  readonly description: string;
  /** True when events of several nodes are read (NATS with `--node '*'` or a list): each carries `node`. */
  readonly manyNodes?: boolean;
  /** Events the filter selects, in seq order, then the iteration ends. */
  readEvents(filter?: EventFilter): AsyncIterable<SourcedEvent>;
  /** Every record, undecoded, in order; `verify` decodes (and reports) them itself. */
  readRecords(): AsyncIterable<SourcedRecord>;
  /** Catch-up from `filter.fromSeq`, then live until `signal` aborts. */
  follow(filter: EventFilter, signal?: AbortSignal): AsyncIterable<SourcedEvent>;
  status(onProgress?: (done: number, total: number) => void): Promise<SourceStatus>;
  /**
   * What retention removed from the node's local log (undefined where there is no such
   * record: NATS holds everything the relay published, and a service too old to say).
   */
  pruned?(query: PrunedQuery): Promise<PrunedReport | undefined>;
  /** How many events a full read goes through, for progress bars. */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** Decodes a record into a SourcedEvent (throws CorruptRecordError / UnknownEventError). */
export function sourced(record: { seq: number; json: string }): SourcedEvent {
  return { seq: record.seq, json: record.json, event: decodeEvent(record.json, record.seq) };
}
