import {
  millis,
  nanos,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import { CriLedgerError } from '../../domain/errors.js';
import { formatDurationMs } from './duration-format.js';
import { type StreamLimits, type StreamSettings } from './nats-stream-settings.js';
import { nodeSubjects, subjectCovers } from './nats-subject.js';

export { formatDurationMs };
export * from './nats-stream-settings.js';

// JetStream API error codes (nats-server's errors.json).
const STREAM_NOT_FOUND = 10059;
const UPDATE_ATTEMPTS = 5;

/** The limits `config` sets, with JetStream's -1 ("unlimited") as 0. */
export function streamLimits(config: StreamConfig): StreamLimits {
  return {
    replicas: config.num_replicas,
    maxAgeMs: millis(config.max_age ?? 0),
    maxBytes: Math.max(0, config.max_bytes ?? -1),
    duplicateWindowMs: millis(config.duplicate_window ?? 0),
  };
}

/** One stream setting that differs from the config. */
export interface StreamConfigMismatch {
  key: 'storage' | 'retention' | 'num_replicas' | 'duplicate_window' | 'max_age' | 'max_bytes';
  actual: string;
  wanted: string;
}

/**
 * The existing stream was set up differently from what the config asks for. The relay
 * does not change storage, retention, replicas or windows of a stream other nodes (and
 * consumers) depend on: an operator reconciles the config or the stream.
 */
export class StreamConfigMismatchError extends CriLedgerError {
  constructor(
    readonly stream: string,
    readonly mismatches: readonly StreamConfigMismatch[],
  ) {
    super(`stream ${stream}: ${mismatches.map((m) => `${m.key} is ${m.actual}, config wants ${m.wanted}`).join('; ')}`);
  }
}

const maxAge = (ms: number): string => (ms === 0 ? '0 (unlimited)' : formatDurationMs(ms));
const maxBytes = (n: number): string => (n <= 0 ? '0 (unlimited)' : String(n));

/** The settings of `existing` that differ from `wanted`, in a fixed order. */
export function compareStreamConfig(existing: StreamConfig, wanted: StreamSettings): StreamConfigMismatch[] {
  const out: StreamConfigMismatch[] = [];
  if (existing.storage !== StorageType.File)
    out.push({ key: 'storage', actual: existing.storage, wanted: StorageType.File });
  // Interest or work-queue retention would delete events once someone read them.
  if (existing.retention !== RetentionPolicy.Limits) {
    out.push({ key: 'retention', actual: existing.retention, wanted: RetentionPolicy.Limits });
  }
  if (existing.num_replicas !== wanted.replicas) {
    out.push({ key: 'num_replicas', actual: String(existing.num_replicas), wanted: String(wanted.replicas) });
  }
  if (existing.duplicate_window !== nanos(wanted.duplicateWindowMs)) {
    out.push({
      key: 'duplicate_window',
      actual: formatDurationMs(millis(existing.duplicate_window)),
      wanted: formatDurationMs(wanted.duplicateWindowMs),
    });
  }
  if ((existing.max_age ?? 0) !== nanos(wanted.maxAgeMs)) {
    out.push({ key: 'max_age', actual: maxAge(millis(existing.max_age ?? 0)), wanted: maxAge(wanted.maxAgeMs) });
  }
  // JetStream says -1 for "no limit"; the config says 0.
  if (Math.max(0, existing.max_bytes ?? -1) !== wanted.maxBytes) {
    out.push({ key: 'max_bytes', actual: maxBytes(existing.max_bytes ?? -1), wanted: maxBytes(wanted.maxBytes) });
  }
  return out;
}

function isStreamNotFound(error: unknown): boolean {
  const api = (error as { api_error?: { err_code?: number } } | undefined)?.api_error;
  return api?.err_code === STREAM_NOT_FOUND;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isStreamNotFound(error)) return undefined;
    throw error;
  }
}

/**
 * Makes sure the stream exists, captures `cri-ledger.<node>.>`, and has the configured
 * settings. Creates it when missing; adds this node's subjects to an existing one (many
 * nodes aggregate into one stream); throws StreamConfigMismatchError listing every key
 * that differs. Returns what it did and the stream's config as it then stands.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  s: StreamSettings,
): Promise<{ done: 'created' | 'updated' | 'unchanged'; config: StreamConfig }> {
  const ours = nodeSubjects(s.node);
  let updated = false;
  // A stream update replaces the whole subject list, so two nodes extending it at the same
  // time can drop each other's subject: re-read after each update until ours is there.
  for (let attempt = 1; attempt <= UPDATE_ATTEMPTS; attempt++) {
    const info = await streamInfo(jsm, s.name);
    if (info === undefined) {
      try {
        const created = await jsm.streams.add({
          name: s.name,
          subjects: [ours],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          num_replicas: s.replicas,
          duplicate_window: nanos(s.duplicateWindowMs),
          max_age: nanos(s.maxAgeMs),
          max_bytes: s.maxBytes === 0 ? -1 : s.maxBytes,
        });
        return { done: 'created', config: created.config };
      } catch (error) {
        // Another node may have created it in the meantime; the next round reads it.
        if (attempt === UPDATE_ATTEMPTS) throw error;
        continue;
      }
    }
    const mismatches = compareStreamConfig(info.config, s);
    if (mismatches.length > 0) throw new StreamConfigMismatchError(s.name, mismatches);
    if (info.config.subjects.some((pattern) => subjectCovers(pattern, ours)))
      return { done: updated ? 'updated' : 'unchanged', config: info.config };
    await jsm.streams.update(s.name, { ...info.config, subjects: [...info.config.subjects, ours] });
    updated = true;
  }
  throw new CriLedgerError(`stream ${s.name}: could not add ${ours} to its subjects after ${UPDATE_ATTEMPTS} attempts`);
}
