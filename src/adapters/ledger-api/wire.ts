import type { EventFilter } from './event-filter.js';

/*
 * The messages of proto/cri_ledger/v1/ledger.proto as @grpc/proto-loader presents them
 * (camelCase fields, uint64 as number, unset scalars as their defaults).
 */

export interface WireEventFilter {
  streams: string[];
  types: string[];
  since: string;
  until: string;
  toSeq: number;
}

export interface WireReadRequest {
  fromSeq: number;
  filter: WireEventFilter | null;
}

/** One stored event: the envelope JSON exactly as it is in the log. */
export interface EventRecord {
  seq: number;
  json: string;
}

export interface WireRelayStatus {
  enabled: boolean;
  connected: boolean;
  cursor: number;
  lag: number;
  lastError: string;
  lastPublishAt: string;
  stream: string;
  server: string;
  servers: string[];
  streamLimits: { replicas: number; maxAgeMs: number; maxBytes: number; duplicateWindowMs: number } | null;
  resendHorizonMs: number;
  warnings: string[];
}

export interface WireOperationInFlight {
  stream: string;
  operation: string;
  id: string;
  name: string;
  correlationId: string;
  startedAt: string;
  startedSeq: number;
  lastStep: string;
  lastStepAt: string;
  ageMs: number;
  /** Empty unless the saga stalled past its caller's deadline. */
  stalledStep: string;
  stalledAt: string;
  stalledDeadline: string;
}

export interface WireStatus {
  node: string;
  head: number;
  headAt: string;
  relay: WireRelayStatus | null;
  counts: {
    containers: number;
    sandboxes: number;
    containerNames: number;
    sandboxNames: number;
    operationsInFlight: number;
    openSessions: number;
  } | null;
  operations: WireOperationInFlight[];
  startedAt: string;
  containerd: { address: string; namespace: string } | null;
  snapshotDir: string;
}

/** The domain filter of a request: empty strings and zeroes mean "not set". */
export function filterFromWire(request: WireReadRequest): EventFilter {
  const f = request.filter;
  const out: EventFilter = {};
  if (request.fromSeq > 0) out.fromSeq = request.fromSeq;
  if (!f) return out;
  if (f.toSeq > 0) out.toSeq = f.toSeq;
  if (f.since) out.since = f.since;
  if (f.until) out.until = f.until;
  if (f.streams.length > 0) out.streams = f.streams;
  if (f.types.length > 0) out.types = f.types;
  return out;
}

/** The request for a domain filter. */
export function filterToWire(filter: EventFilter): WireReadRequest {
  return {
    fromSeq: filter.fromSeq ?? 0,
    filter: {
      streams: [...(filter.streams ?? [])],
      types: [...(filter.types ?? [])],
      since: filter.since ?? '',
      until: filter.until ?? '',
      toSeq: filter.toSeq ?? 0,
    },
  };
}

export interface WirePrunedRequest {
  fromSeq: number;
  toSeq: number;
  streams: string[];
  names: string[];
}

export interface WirePrunedStream {
  stream: string;
  version: number;
  complete: boolean;
  events: number;
  firstSeq: number;
  lastSeq: number;
  firstAt: string;
  lastAt: string;
  prunedAt: string;
  name: string;
  bytes: number;
}

export interface WirePrunedResponse {
  pruned: boolean;
  events: number;
  streams: number;
  bytes: number;
  firstPrunedAt: string;
  lastPrunedAt: string;
  eventsInRange: number;
  firstInRange: number;
  lastInRange: number;
  streamsAsked: WirePrunedStream[];
  maxAgeMs: number;
  maxBytes: number;
  policyKnown: boolean;
}
