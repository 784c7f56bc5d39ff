/**
 * mkfifo, mknod, lsetxattr, lgetxattr, mount, umount2, network-namespace creation and a socket in a
 * network namespace as system calls, from the small
 * native module in `native/syscalls.c` (built into `dist/native/` by
 * scripts/build-native.sh). They replace child processes (mkfifo(1), mount(8),
 * unshare(1)), each of which cost about 12 ms to spawn from Node on these machines.
 *
 * Errors carry `code` (the errno name), `syscall` and `path`, like Node's fs errors.
 */
import { createRequire } from 'node:module';
import { CriLedgerError } from '../../domain/errors.js';

interface NativeSyscalls {
  mkfifo(path: string, mode: number): void;
  setPipeSize(fd: number, bytes: number): number;
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  bindNewNetns(target: string): Promise<void>;
  socketInNetns(netnsPath: string, family: 4 | 6): number;
  mknod(path: string, mode: number, major: number, minor: number): void;
  lsetxattr(path: string, name: string, value: Buffer): void;
  lgetxattr(path: string, name: string): Buffer | undefined;
  flags: Record<
    | 'MS_RDONLY'
    | 'MS_NOSUID'
    | 'MS_NODEV'
    | 'MS_NOEXEC'
    | 'MS_BIND'
    | 'MS_REC'
    | 'MS_PRIVATE'
    | 'MS_SLAVE'
    | 'MS_SHARED'
    | 'MNT_DETACH'
    | 'S_IFCHR'
    | 'S_IFBLK'
    | 'S_IFIFO',
    number
  >;
}

/** The native module is missing or does not load (not built, or built for another Node). */
export class NativeModuleError extends CriLedgerError {}

/** Where the build puts the module, relative to this file in dist/src/adapters/native. */
const MODULE_PATH = '../../../native/cri_ledger_syscalls.node';

let loaded: NativeSyscalls | undefined;
function native(): NativeSyscalls {
  if (!loaded) {
    try {
      loaded = createRequire(import.meta.url)(MODULE_PATH) as NativeSyscalls;
    } catch (cause) {
      throw new NativeModuleError(
        `cannot load cri-ledger's native module (${MODULE_PATH}); build it with scripts/build-native.sh: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
  }
  return loaded;
}

/** The mount(2) flag values from the C headers. */
export const mountFlags = (): NativeSyscalls['flags'] => native().flags;

/** mkfifo(3): creates a FIFO; throws an error with code EEXIST if `path` exists. */
export function mkfifo(path: string, mode: number): void {
  native().mkfifo(path, mode);
}

/** fcntl(2) F_SETPIPE_SZ on a pipe or FIFO: the capacity the kernel gave (a power of two pages). */
export function setPipeSize(fd: number, bytes: number): number {
  return native().setPipeSize(fd, bytes);
}

/** mount(2). `source`, `fstype` and `data` may be null (a bind or a propagation change). */
export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: number,
  data: string | null = null,
): Promise<void> {
  return native().mount(source, target, fstype, flags, data);
}

/** umount2(2); `detach` is MNT_DETACH (a lazy unmount). */
export function umount(target: string, options: { detach?: boolean } = {}): Promise<void> {
  return native().umount2(target, options.detach ? native().flags.MNT_DETACH : 0);
}

/**
 * Creates a network namespace and bind-mounts it onto `target`, an existing file, which
 * keeps it alive. Done on a thread of its own, so no other thread changes namespace.
 */
export function bindNewNetns(target: string): Promise<void> {
  return native().bindNewNetns(target);
}

/**
 * An unconnected, non-blocking TCP socket (IPv4 or IPv6) that lives in the network
 * namespace at `netnsPath`: the calling thread enters the namespace for the socket(2)
 * call only and is back in its own before this returns (see native/syscalls.c).
 * Returns the descriptor, which the caller owns.
 */
export function socketInNetns(netnsPath: string, family: 4 | 6): number {
  return native().socketInNetns(netnsPath, family);
}

/** The kinds of node mknod makes: a character or block device, or a FIFO. */
export type NodeKind = 'char' | 'block' | 'fifo';

/** mknod(2): a device or FIFO node; `permissions` are the mode's permission bits. Throws EEXIST if `path` exists. */
export function mknod(path: string, kind: NodeKind, permissions: number, major = 0, minor = 0): void {
  const flags = native().flags;
  const type = kind === 'char' ? flags.S_IFCHR : kind === 'block' ? flags.S_IFBLK : flags.S_IFIFO;
  native().mknod(path, type | (permissions & 0o7777), major, minor);
}

/** lsetxattr(2): sets extended attribute `name` of `path` itself (a symlink is not followed). */
export function lsetxattr(path: string, name: string, value: Buffer): void {
  native().lsetxattr(path, name, value);
}

/** lgetxattr(2): the value of extended attribute `name` of `path` itself; undefined when it has none. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  return native().lgetxattr(path, name);
}
