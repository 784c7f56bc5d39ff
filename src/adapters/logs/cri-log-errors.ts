import { CriLedgerError } from '../../domain/errors.js';
import type { LogStreamName } from './cri-log-format.js';

/**
 * The log file's directory does not exist. kubelet creates the pod's log directory before
 * CreateContainer; the writer never creates it, so a missing one is a bug to see, not to paper over.
 */
export class LogDirectoryNotFoundError extends CriLedgerError {
  constructor(
    readonly path: string,
    readonly dir: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot open container log ${path}: its directory ${dir} does not exist`, options);
  }
}

/** The log file could not be opened for another reason (permissions, a directory in the way, ...). */
export class LogFileOpenError extends CriLedgerError {
  constructor(
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot open container log ${path}: ${describe(options?.cause)}`, options);
  }
}

/** reopen() or attach() on a writer that close() has closed (or whose streams all ended, for attach). */
export class LogWriterClosedError extends CriLedgerError {
  constructor(
    readonly path: string,
    readonly operation: 'attach' | 'reopen',
  ) {
    super(`cannot ${operation} the container log ${path}: the writer is closed`);
  }
}

/**
 * Writing the log file failed. The writer keeps reading the container's output (and drops
 * it) so the container never blocks on a full pipe, as containerd does; the next reopen()
 * tries a fresh file.
 */
export class LogWriteError extends CriLedgerError {
  constructor(
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(
      `writing container log ${path} failed; output is dropped until the log is reopened: ${describe(options?.cause)}`,
      options,
    );
  }
}

/** Reading a container's stream failed; what was read is written and the stream counts as ended. */
export class LogSourceError extends CriLedgerError {
  constructor(
    readonly path: string,
    readonly stream: LogStreamName,
    options?: { cause?: unknown },
  ) {
    super(`reading the container's ${stream} for ${path} failed: ${describe(options?.cause)}`, options);
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
