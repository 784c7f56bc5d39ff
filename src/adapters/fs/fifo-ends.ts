import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { setPipeSize } from '../native/syscalls.js';

/*
 * Our ends of the FIFOs a containerd shim connects a process's stdio to, as net.Sockets
 * on the descriptor: libuv polls them with epoll, so no thread-pool thread ever blocks on
 * a FIFO (fs streams would hold one per pending read or write). Every open here is one
 * that cannot block (O_NONBLOCK, or O_RDWR on a FIFO), so it is made on the event loop:
 * a few microseconds, where a thread-pool round trip took milliseconds during an exec's
 * start (docs/streaming.md).
 */

/** The capacity asked for an output FIFO: 1 MiB, the default `fs.pipe-max-size`. */
export const OUTPUT_FIFO_BYTES = 1024 * 1024;

/**
 * The read side of an output FIFO (stdout, stderr), opened O_RDONLY|O_NONBLOCK, which
 * returns at once without a writer. epoll reports nothing on a FIFO that has never had
 * a writer, so the stream waits for the shim and ends only when the shim closes its
 * write side (a plain read(2) before the shim's open would return 0: an early end).
 * The shim's own open of the write side blocks until this reader exists.
 */
export async function openFifoReader(path: string): Promise<Socket> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  // A larger pipe lets the shim write a burst without waiting for each of our reads: a
  // 100 MB `cat` through exec stdout. Best effort: the default 64 KiB works too.
  try {
    setPipeSize(fd, OUTPUT_FIFO_BYTES);
  } catch {
    // EPERM past the user's pipe-buffer limits (fs.pipe-max-size, pipe-user-pages-soft)
  }
  // The socket owns the fd from here and closes it when destroyed.
  return new Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
}

/**
 * The write side of a stdin FIFO.
 *
 * - `before-reader`: opened O_RDWR, which never blocks and never fails for want of a
 *   reader, so it can be opened before the shim has opened its read side (an exec's
 *   stdin, made before tasks.Exec). Writes wait in the pipe until the shim reads.
 * - `reader-required`: opened O_WRONLY|O_NONBLOCK, which fails with ENXIO when nobody
 *   reads (a container whose shim is gone or whose stdin was closed), and later writes
 *   fail with EPIPE once the reader goes, rather than filling a pipe nobody drains.
 *
 * The shim keeps a write side of its own open until tasks.CloseIO, so closing this one
 * alone never ends the process's stdin.
 */
export async function openFifoWriter(path: string, when: 'before-reader' | 'reader-required'): Promise<Socket> {
  const flags = when === 'before-reader' ? constants.O_RDWR : constants.O_WRONLY | constants.O_NONBLOCK;
  const fd = openSync(path, flags);
  return new Socket({ fd, readable: false, writable: true });
}

/** Ends our write side once what was written is in the pipe, then closes it. Resolves either way. */
export async function closeWriter(end: Socket): Promise<void> {
  await new Promise<void>((resolve) => {
    if (end.writableFinished || end.destroyed) return resolve();
    end.once('finish', resolve);
    end.once('close', resolve);
    end.end();
  });
  end.destroy();
}
