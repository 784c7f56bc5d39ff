import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';

// NUL would truncate the path at the syscall; other control bytes make log files nobody can name safely.
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The container's log file: the sandbox's log directory joined with the container's
 * log path ('' when either is unset, as containerd). A result outside the log directory,
 * or with NUL or control bytes, is refused: kubelet reads and rotates that file, and a
 * path that escapes would let a pod spec choose a file on the host to write.
 */
export function containerLogPath(logDirectory: string, logPath: string): string {
  const field = 'config.log_path';
  if (CONTROL.test(logPath)) throw new InvalidArgumentError(field, 'contains NUL or control characters');
  if (CONTROL.test(logDirectory)) throw new InvalidArgumentError('sandbox_config.log_directory', 'contains NUL or control characters');
  if (logDirectory === '' || logPath === '') return '';
  const dir = posix.normalize(logDirectory);
  const joined = posix.join(dir, logPath);
  const rel = posix.relative(dir, joined);
  if (rel === '' || rel === '..' || rel.startsWith('../') || posix.isAbsolute(rel)) {
    throw new InvalidArgumentError(field, `"${logPath}" escapes the log directory ${logDirectory}`);
  }
  return joined;
}
