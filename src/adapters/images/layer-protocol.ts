import { UnsafeLayerEntryError, type ExtractTarget } from './layer-extractor.js';
import { CorruptTarError, UnsupportedTarEntryError } from './tar-reader.js';

/*
 * The messages between the main thread and the layer worker
 * (src/adapters/images/layer-worker.ts), and how an error crosses between them: a
 * structured clone keeps only a plain Error, so the classes the pull tells apart (an
 * entry left to containerd, a corrupt tar, an unsafe path, an errno) are rebuilt here.
 */

export type ToLayerWorker =
  | { op: 'open'; id: number; compression: 'gzip' | 'none' }
  /** Compressed bytes, transferred. */
  | { op: 'data'; id: number; bytes: ArrayBuffer }
  | { op: 'end'; id: number }
  | { op: 'extract'; id: number; target: ExtractTarget }
  | { op: 'abort'; id: number };

export type FromLayerWorker =
  /** The worker took `bytes` of the job's compressed input. */
  | { op: 'credit'; id: number; bytes: number }
  | { op: 'done'; id: number; diffId: string }
  | { op: 'failed'; id: number; error: LayerErrorWire };

export interface LayerErrorWire {
  name: string;
  message: string;
  /** An errno or zlib code. */
  code?: string;
  errno?: number;
  syscall?: string;
  /** The file of an errno, or UnsafeLayerEntryError's entry path. */
  path?: string;
}

export function serializeLayerError(error: unknown): LayerErrorWire {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const e = error as NodeJS.ErrnoException;
  const wire: LayerErrorWire = { name: error.name, message: error.message };
  if (typeof e.code === 'string') wire.code = e.code;
  if (typeof e.errno === 'number') wire.errno = e.errno;
  if (typeof e.syscall === 'string') wire.syscall = e.syscall;
  if (typeof e.path === 'string') wire.path = e.path;
  return wire;
}

/** The error the worker reported, as its own class again where the pull tells it apart. */
export function deserializeLayerError(wire: LayerErrorWire): Error {
  let error: Error;
  if (wire.name === 'UnsupportedTarEntryError') error = new UnsupportedTarEntryError(wire.message);
  else if (wire.name === 'CorruptTarError') error = new CorruptTarError(wire.message);
  else if (wire.name === 'UnsafeLayerEntryError') {
    error = Object.assign(new UnsafeLayerEntryError(wire.path ?? '', ''), { message: wire.message });
  } else {
    error = new Error(wire.message);
    error.name = wire.name;
  }
  const e = error as NodeJS.ErrnoException;
  if (wire.code !== undefined) e.code = wire.code;
  if (wire.errno !== undefined) e.errno = wire.errno;
  if (wire.syscall !== undefined) e.syscall = wire.syscall;
  if (wire.path !== undefined) e.path = wire.path;
  return error;
}

/** A zlib failure or a malformed tar: what a blob that does not match its digest also looks like. */
export function isLayerDataError(error: Error): boolean {
  return (
    error instanceof CorruptTarError ||
    (typeof (error as NodeJS.ErrnoException).code === 'string' &&
      (error as NodeJS.ErrnoException).code!.startsWith('Z_'))
  );
}
