import { Command, CommanderError } from 'commander';
import { CriLedgerError } from '../domain/errors.js';
import { registerCommands } from './commands/index.js';

/*
 * The cri-ledger command line. Each subcommand lives in src/cli/commands/<name>.ts and
 * registers itself in commands/index.ts. Errors end here: a known condition prints one
 * line and exits 1 (2 for usage); anything else prints its stack.
 */
const program = new Command('cri-ledger')
  .description('An event-sourced Kubernetes CRI runtime service on containerd')
  .showHelpAfterError()
  .exitOverride();

await registerCommands(program, process.argv);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  if (error instanceof CriLedgerError) {
    console.error(`cri-ledger: ${error.message}`);
    process.exit(1);
  }
  console.error(error);
  process.exit(1);
}
