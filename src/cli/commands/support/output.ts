/*
 * Standard output for people and scripts. A closed pipe (`cri-ledger events | head`) is
 * the reader saying it has seen enough: exit quietly instead of crashing on EPIPE.
 */
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

/** Writes one line to stdout. */
export function print(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Writes a note for people to stderr, so stdout stays parseable. */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}
