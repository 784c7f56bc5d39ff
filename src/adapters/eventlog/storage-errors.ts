import { CriLedgerError } from '../../domain/errors.js';

/*
 * Failures of the disk under the ledger. LevelDB reports them as LEVEL_IO_ERROR with
 * the OS's text ("IO error: <file>: No space left on device"); these classes say what
 * happened to the caller's write (nothing of it was stored) and what to do.
 */

/** The filesystem holding the ledger has no space left: the append stored nothing (RESOURCE_EXHAUSTED). */
export class LedgerDiskFullError extends CriLedgerError {
  constructor(
    readonly dir: string,
    options?: { cause?: unknown },
  ) {
    super(
      `the disk holding the ledger at ${dir} is full (no space left on device): nothing was written; free space there`,
      options,
    );
  }
}

/** Any other I/O failure writing or opening the ledger: the append stored nothing (UNAVAILABLE). */
export class LedgerStorageError extends CriLedgerError {
  constructor(
    readonly dir: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`the ledger at ${dir} could not be written: ${detail}; nothing was written`, options);
  }
}

const DISK_FULL = /No space left on device|Disk quota exceeded|ENOSPC|EDQUOT/i;

function messages(error: unknown): string[] {
  const out: string[] = [];
  for (
    let e = error as { message?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.message === 'string') out.push(e.message);
  }
  return out;
}

/** Whether a LevelDB (or fs) error, or one of its causes, says the disk is full. */
export function isDiskFull(error: unknown): boolean {
  return messages(error).some((m) => DISK_FULL.test(m));
}

/** The storage error for a failed LevelDB write or open in `dir`. */
export function storageError(dir: string, error: unknown): LedgerDiskFullError | LedgerStorageError {
  if (isDiskFull(error)) return new LedgerDiskFullError(dir, { cause: error });
  return new LedgerStorageError(dir, messages(error).at(-1) ?? String(error), { cause: error });
}
