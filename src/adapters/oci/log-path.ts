import { posix } from 'node:path';
import { InvalidArgumentError } from '../../domain/errors.js';

// NUL would truncate the path at the syscall; other control bytes make log files nobody can name safely.
// oxlint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The container's log file: the sandbox's log directory joined with the container's
 * log path ('' when either is unset, as containerd). An absolute log path, a result
 * outside the log directory, or NUL or control bytes are refused: kubelet reads and
 * rotates that file, and a path that escapes would let a pod spec choose a file on the
 * host to write. The CRI defines the log path as relative to the directory; containerd
 * joins an absolute one silently, which hides a request that meant to escape. Symlinks
 * on the host are the caller's to check (`src/adapters/fs/host-paths.ts`): this is pure.
 */
export function containerLogPath(logDirectory: string, logPath: string): string {
  const field = 'config.log_path';
  if (CONTROL.test(logPath)) throw new InvalidArgumentError(field, 'contains NUL or control characters');
  if (CONTROL.test(logDirectory))
    throw new InvalidArgumentError('sandbox_config.log_directory', 'contains NUL or control characters');
  if (logDirectory === '' || logPath === '') return '';
  if (posix.isAbsolute(logPath))
    throw new InvalidArgumentError(
      field,
      `"${logPath}" is absolute: it must be relative to the log directory ${logDirectory}`,
    );
  const dir = posix.normalize(logDirectory);
  const joined = posix.join(dir, logPath);
  const rel = posix.relative(dir, joined);
  if (rel === '' || rel === '..' || rel.startsWith('../') || posix.isAbsolute(rel)) {
    throw new InvalidArgumentError(field, `"${logPath}" escapes the log directory ${logDirectory}`);
  }
  return joined;
}
