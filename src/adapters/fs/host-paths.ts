import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  realpathSync,
} from 'node:fs';
import { dirname, posix } from 'node:path';
import type { CreatedHostPath, MountSource } from '../../commands/ports.js';
import { InvalidArgumentError } from '../../domain/errors.js';

/*
 * Paths on the host that a request names or reaches (mount host paths, the log file,
 * localhost seccomp profiles), checked against symlinks an attacker may plant or swap
 * in. The lexical checks (absolute, no `..`, no control bytes) are pure and run first
 * (src/domain/text.ts, src/adapters/oci); these read the file system.
 *
 * A mount host path is resolved once, when the spec is built: the spec records the real
 * path, and the file it names is pinned by (device, inode). StartContainer checks the
 * pin again before the task is created (docs/decisions.md, "host paths swapped to
 * symlinks"). A missing one is made as a directory by CreateContainer, then pinned.
 */

/** O_PATH (Linux): a descriptor that names a file without opening it for I/O, so a device or FIFO is never opened. */
const O_PATH = 0o10000000;

/** A localhost seccomp profile larger than this is refused: the biggest real ones are ~30 KiB. */
export const MAX_SECCOMP_PROFILE_BYTES = 1024 * 1024;

/**
 * The real path of a mount host path, and its pin. A missing path stays as given, and
 * its pin says it was absent: CreateContainer makes it (createHostDirectory). It is
 * refused here, before anything is written, when it could not be made without
 * following a symlink or through something that is not a directory. The final component
 * of an existing path is opened without following a symlink, and the descriptor's own
 * path must be the real path: a component swapped to a symlink since `realpath` would
 * show there.
 */
export function resolveMountSource(hostPath: string, field: string): { path: string; pin: MountSource } {
  let real: string;
  try {
    real = realpathSync(hostPath);
  } catch {
    checkCreatable(hostPath, field);
    return { path: hostPath, pin: { field, path: hostPath, dev: 0, ino: 0, absent: true } };
  }
  return { path: real, pin: pinOf(real, field) };
}

/** `/a/b/c` -> `/a`, `/a/b`, `/a/b/c` (empty and `.` components dropped; `..` was refused before). */
function prefixes(path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
}

/** What is at `prefix` on the way to a host path: missing, a real directory, or why it is in the way. */
function partAt(prefix: string): 'missing' | 'directory' | { why: string } {
  let st;
  try {
    st = lstatSync(prefix);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : { why: (error as Error).message };
  }
  if (st.isSymbolicLink()) return { why: `${prefix} is a symlink` };
  return st.isDirectory() ? 'directory' : { why: `${prefix} is not a directory` };
}

/**
 * Every part of a missing host path that exists must be a real directory: the path is
 * made where it is written, never where a symlink on the way leads (a symlinked parent
 * is refused, as it was at StartContainer before missing paths were made).
 */
function checkCreatable(hostPath: string, field: string): void {
  for (const prefix of prefixes(hostPath)) {
    const part = partAt(prefix);
    if (part === 'missing') return; // everything from here on is made
    if (part !== 'directory')
      throw new InvalidArgumentError(field, `${hostPath} does not exist and cannot be made: ${part.why}`);
  }
}

/** The mode a made host directory gets, as containerd's CRI and CRI-O make it. */
export const HOST_DIRECTORY_MODE = 0o755;

/**
 * Makes a mount host path that was missing as directories (HOST_DIRECTORY_MODE, not
 * narrowed by the umask), each part checked not to be a symlink or a file, then pins
 * it. A part that appeared meanwhile is used if it is a real directory. Returns the
 * directories made, outermost first ([] when it all exists by now). A parent swapped to
 * a symlink between the check and mkdir can still make a directory where it leads; the
 * pin then refuses the path, since its real path is not the path.
 */
export function createHostDirectory(source: MountSource): CreatedHostPath {
  const made: string[] = [];
  for (const prefix of prefixes(source.path)) {
    try {
      mkdirSync(prefix, { mode: HOST_DIRECTORY_MODE });
      chmodSync(prefix, HOST_DIRECTORY_MODE);
      made.push(prefix);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const part = partAt(prefix);
      if (part !== 'directory')
        throw new InvalidArgumentError(
          source.field,
          `${source.path} could not be made: ${part === 'missing' ? `${prefix} vanished` : part.why}`,
        );
    }
  }
  return {
    field: source.field,
    path: source.path,
    created: made,
    mode: HOST_DIRECTORY_MODE,
    pin: pinOf(source.path, source.field),
  };
}

function pinOf(path: string, field: string): MountSource {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch (cause) {
    throw new InvalidArgumentError(
      field,
      `cannot open ${path} without following a symlink: ${(cause as Error).message}`,
      { cause },
    );
  }
  try {
    const opened = readlinkSync(`/proc/self/fd/${fd}`);
    if (opened !== path) throw new InvalidArgumentError(field, `${path} changed while it was resolved (now ${opened})`);
    const st = fstatSync(fd);
    // O_PATH with O_NOFOLLOW opens a symlink itself rather than failing.
    if (st.isSymbolicLink()) throw new InvalidArgumentError(field, `${path} is a symlink`);
    return { field, path, dev: st.dev, ino: st.ino };
  } finally {
    closeSync(fd);
  }
}

/** Throws InvalidArgumentError naming the field when a pinned host path is now a symlink, gone, or another file. */
export function checkMountSource(pin: MountSource): void {
  if (pin.absent) {
    let real: string;
    try {
      real = realpathSync(pin.path);
    } catch {
      return; // still absent: runc refuses to mount it
    }
    if (real !== pin.path)
      throw new InvalidArgumentError(
        pin.field,
        `${pin.path} did not exist at CreateContainer and now leads through a symlink to ${real}`,
      );
    return;
  }
  let now: MountSource;
  try {
    now = pinOf(pin.path, pin.field);
  } catch (error) {
    const why =
      error instanceof InvalidArgumentError ? error.message.slice(`${pin.field}: `.length) : (error as Error).message;
    throw new InvalidArgumentError(
      pin.field,
      `${pin.path} is no longer the directory or file CreateContainer resolved: ${why}`,
      { cause: error },
    );
  }
  if (now.dev !== pin.dev || now.ino !== pin.ino) {
    throw new InvalidArgumentError(
      pin.field,
      `${pin.path} was replaced since CreateContainer resolved it (inode ${pin.dev}:${pin.ino}, now ${now.dev}:${now.ino})`,
    );
  }
}

/**
 * The log file must stay inside the log directory on the host too: the deepest part of
 * its path that exists, with symlinks resolved, must be inside the log directory's real
 * path, and the file itself must not be a symlink. A log directory that does not exist
 * yet is the log writer's to report.
 */
export function checkLogPathOnHost(logDirectory: string, logPath: string, field: string): void {
  if (logDirectory === '' || logPath === '') return;
  let realDir: string;
  try {
    realDir = realpathSync(logDirectory);
  } catch {
    return;
  }
  try {
    if (lstatSync(logPath).isSymbolicLink()) throw new InvalidArgumentError(field, `${logPath} is a symlink`);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw error;
  }
  let existing = dirname(logPath);
  for (;;) {
    try {
      const real = realpathSync(existing);
      if (real !== realDir && !real.startsWith(`${realDir}/`)) {
        throw new InvalidArgumentError(
          field,
          `${existing} resolves to ${real}, outside the log directory ${logDirectory}`,
        );
      }
      return;
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      const parent = posix.dirname(existing);
      if (parent === existing) return;
      existing = parent;
    }
  }
}

/**
 * A localhost seccomp profile: a regular file of at most MAX_SECCOMP_PROFILE_BYTES,
 * opened without following a symlink at its last component (a profile swapped to a
 * symlink to /etc/shadow is refused, not read) and without blocking (a FIFO planted
 * there cannot hang the call). Errors never quote the file's content.
 */
export function readLocalhostProfile(path: string, field: string): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'it is a symlink' : (cause as Error).message;
    throw new InvalidArgumentError(field, `cannot read localhost profile ${path}: ${why}`, { cause });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InvalidArgumentError(field, `localhost profile ${path} is not a regular file`);
    if (st.size > MAX_SECCOMP_PROFILE_BYTES)
      throw new InvalidArgumentError(
        field,
        `localhost profile ${path} is larger than ${MAX_SECCOMP_PROFILE_BYTES} bytes`,
      );
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
