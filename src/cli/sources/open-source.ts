import type { Command } from 'commander';
import { InvalidArgumentError } from '../../domain/errors.js';
import { ledgerDir, type Config } from '../config.js';
import { configFrom } from '../options.js';
import type { EventSource } from './event-source.js';

/**
 * Adds the source flags. Without either, a command reads through the running
 * service's socket (`--socket`, or the configured one).
 */
export function withSourceOptions(command: Command): Command {
  return command
    .option('--db [dir]', "read a stopped service's ledger directory (default: <root>/ledger)")
    .option(
      '--nats [url]',
      "read the JetStream stream (default: the configured nats.url); off the node, also pass --node <publishing node>, a comma list, or '*' for every node",
    );
}

/** Which source the flags ask for, resolved against the configuration. */
export type SourceChoice =
  | { kind: 'socket'; socket: string }
  | { kind: 'db'; dir: string }
  | { kind: 'nats'; url: string; stream: string; node: string };

export function chooseSource(opts: { db?: string | boolean; nats?: string | boolean }, config: Config): SourceChoice {
  if (opts.db !== undefined && opts.nats !== undefined) {
    throw new InvalidArgumentError('--db', 'choose one source: --db or --nats (or neither, for the socket)');
  }
  if (opts.db !== undefined) return { kind: 'db', dir: typeof opts.db === 'string' ? opts.db : ledgerDir(config) };
  if (opts.nats !== undefined) {
    const url = typeof opts.nats === 'string' ? opts.nats : config.nats.url;
    if (!url) throw new InvalidArgumentError('--nats', 'needs a URL, or nats.url in the configuration');
    return { kind: 'nats', url, stream: config.nats.stream, node: config.node };
  }
  return { kind: 'socket', socket: config.socket };
}

/**
 * Opens the source a command's flags select. The caller closes it. Each source's client
 * library (level, nats, grpc-js) is loaded only when chosen: a CLI run pays for one.
 */
export async function openSource(command: Command): Promise<EventSource> {
  const opts = command.opts<{ db?: string | boolean; nats?: string | boolean; node?: string }>();
  // With --nats, --node may name several nodes (`a,b`) or all (`*`): a read's selection,
  // not this machine's node name, so it is kept out of the configuration's checks.
  const nodes = opts.nats !== undefined && opts.node !== undefined && /[*,]/.test(opts.node) ? opts.node : undefined;
  const config = configFrom(command, nodes === undefined ? [] : ['node']);
  const choice = chooseSource(opts, config);
  if (choice.kind === 'nats' && nodes !== undefined) choice.node = nodes;
  switch (choice.kind) {
    case 'db':
      return (await import('./db-source.js')).DbSource.open(choice.dir, config.node);
    case 'nats':
      return (await import('./nats-source.js')).NatsSource.open(choice);
    case 'socket':
      return (await import('./socket-source.js')).SocketSource.open(choice.socket);
  }
}

/** Runs `body` with the command's source open, and closes it whatever happens. */
export async function withSource<T>(command: Command, body: (source: EventSource) => Promise<T>): Promise<T> {
  const source = await openSource(command);
  try {
    return await body(source);
  } finally {
    await source.close();
  }
}
