import type { Command } from 'commander';
import { InvalidArgumentError } from '../../../domain/errors.js';
import { configWithOrigins } from '../../options.js';
import { chooseSource } from '../../sources/open-source.js';
import type { EventSource } from '../../sources/event-source.js';

/** The containerd a comparison reads, and why that one. */
export interface ContainerdTarget {
  address: string;
  namespace: string;
  /** `the service`, or where the CLI's setting came from. */
  from: string;
  /** Set when the CLI's own explicit setting differs from the service's. */
  disagreement?: string;
}

const KEYS = ['containerd.address', 'containerd.namespace'] as const;

/**
 * Which containerd `verify --against-containerd` must compare the log with. Through the
 * socket, the service's own (it says which in Status); a CLI setting that differs is
 * reported, not used. From `--db` or `--nats` nothing says which containerd wrote the
 * log, so both keys must be set explicitly (flag, environment or file): comparing with a
 * default the service never used would report a false "in sync".
 */
export async function containerdTarget(cmd: Command, source: EventSource): Promise<ContainerdTarget> {
  const { config, origins } = configWithOrigins(cmd);
  const choice = chooseSource(cmd.opts<{ db?: string | boolean; nats?: string | boolean }>(), config);
  const mine = { address: config.containerd.address, namespace: config.containerd.namespace };
  const explicit = KEYS.filter((k) => origins.get(k) !== 'default');
  if (choice.kind === 'socket') {
    const status = await source.status();
    const theirs = status.kind === 'ledger' ? status.containerd : undefined;
    if (!theirs) {
      throw new InvalidArgumentError(
        'containerd.namespace',
        `the service at ${choice.socket} does not say which containerd it uses (an older cri-ledger?); ` +
          'read its log with --db and pass --containerd-address and --containerd-namespace',
      );
    }
    const differs = explicit.filter((k) =>
      k === 'containerd.address' ? mine.address !== theirs.address : mine.namespace !== theirs.namespace,
    );
    const disagreement =
      differs.length === 0
        ? undefined
        : `the CLI's ${differs.map((k) => `${k} ${k.endsWith('address') ? mine.address : mine.namespace} (${origins.get(k)})`).join(' and ')} ` +
          `differs from the service's; comparing with the service's (${theirs.address}, namespace ${theirs.namespace})`;
    return { ...theirs, from: 'the service', ...(disagreement ? { disagreement } : {}) };
  }
  const missing = KEYS.filter((k) => !explicit.includes(k));
  if (missing.length > 0) {
    throw new InvalidArgumentError(
      missing[0]!,
      `reading ${choice.kind === 'db' ? "a stopped service's log (--db)" : 'the stream (--nats)'}, nothing says which containerd wrote it: ` +
        `set ${missing.map((k) => `--${k.replace('.', '-')}`).join(' and ')} to the service's`,
    );
  }
  return { ...mine, from: KEYS.map((k) => origins.get(k)).join(', ') };
}
