import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Every subcommand, in the order `--help` lists them, each loaded only when needed: a
 * command's module pulls in what it runs (gRPC and the CRI protos, OpenTelemetry, the
 * NATS client, the projections), and loading all of them cost every invocation some
 * 400 ms, `serve`'s start included.
 */
const COMMANDS: ReadonlyArray<{ name: string; load: () => Promise<Register> }> = [
  { name: 'serve', load: async () => (await import('./serve.js')).registerServe },
  { name: 'status', load: async () => (await import('./status.js')).registerStatus },
  { name: 'events', load: async () => (await import('./events.js')).registerEvents },
  { name: 'timeline', load: async () => (await import('./timeline.js')).registerTimeline },
  { name: 'report', load: async () => (await import('./report.js')).registerReport },
  { name: 'explain', load: async () => (await import('./explain.js')).registerExplain },
  { name: 'replay', load: async () => (await import('./replay.js')).registerReplay },
  { name: 'verify', load: async () => (await import('./verify.js')).registerVerify },
  { name: 'images', load: async () => (await import('./images.js')).registerImages },
];

/**
 * Registers the subcommand named by `argv` (the first argument that is not an option)
 * alone when it is one; otherwise (no command, `help`, an unknown word) every
 * subcommand, so help and the unknown-command error read as before.
 */
export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const word = argv.slice(2).find((arg) => !arg.startsWith('-'));
  const named = COMMANDS.find((c) => c.name === word);
  for (const c of named ? [named] : COMMANDS) (await c.load())(program);
}
