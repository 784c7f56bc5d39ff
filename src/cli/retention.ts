import type { LevelDbEventLog } from '../adapters/eventlog/leveldb-event-log.js';
import { LogRetention } from '../adapters/eventlog/log-retention.js';
import type { Ledger } from '../commands/ledger.js';
import {
  DEFAULT_RETENTION_BATCH_EVENTS,
  DEFAULT_RETENTION_MIN_ENDED_AGE_MS,
  retentionEnabled,
  type RetentionPolicy,
} from '../commands/retention-policy.js';
import { parseStream } from '../domain/ids.js';
import type { Logger } from '../adapters/logging/logger.js';
import type { Config } from './config.js';

/** The policy the `retention.*` keys configure. */
export function retentionPolicy(config: Config): RetentionPolicy {
  return {
    maxAgeMs: config.retention.maxAge,
    maxBytes: config.retention.maxBytes,
    minEndedAgeMs: DEFAULT_RETENTION_MIN_ENDED_AGE_MS,
    batchEvents: DEFAULT_RETENTION_BATCH_EVENTS,
  };
}

/**
 * Whether the live read models still hold a stream's container or sandbox: in its
 * store, with a saga in flight, an undelivered result, or an open streaming session.
 */
export function liveIn(ledger: Ledger): (stream: string) => boolean {
  const p = ledger.projections;
  return (stream) => {
    const { kind, id } = parseStream(stream);
    if (kind === 'container' && p.containers.get(id)) return true;
    if (kind === 'sandbox' && p.sandboxes.get(id)) return true;
    if (p.operations.get(stream) || p.undelivered.get(stream)) return true;
    for (const session of p.sessions.values()) if (session.stream === stream) return true;
    return false;
  };
}

/** Starts retention when a `retention.*` rule is set; undefined (everything kept) otherwise. */
export function startRetention(
  config: Config,
  log: LevelDbEventLog,
  ledger: Ledger,
  logger: Logger,
): LogRetention | undefined {
  const policy = retentionPolicy(config);
  if (!retentionEnabled(policy)) return undefined;
  if (!config.nats.url) {
    logger.warn(
      { policy },
      'retention is on without a NATS relay: pruned events are gone for good, not kept on JetStream',
    );
  }
  return LogRetention.start({
    log,
    policy,
    relay: config.nats.url !== undefined,
    isLive: liveIn(ledger),
    logger: logger.child({ component: 'retention' }),
    intervalMs: config.retention.interval,
  });
}
