import { constants, type WriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidArgumentError } from '../../domain/errors.js';
import {
  LogDirectoryNotFoundError,
  LogFileOpenError,
  LogSourceError,
  LogWriteError,
  LogWriterClosedError,
} from './cri-log-errors.js';
import {
  DEFAULT_MAX_LINE_BYTES,
  formatRecords,
  formatRfc3339Nano,
  LineSplitter,
  type LogPiece,
  type LogStreamName,
} from './cri-log-format.js';
import { systemClockNs, type EpochNsClock } from './log-clock.js';

/** A new log file's mode, as containerd creates it (the process umask still applies). */
export const DEFAULT_LOG_FILE_MODE = 0o640;

export interface CriLogWriterOptions {
  /** The container's log file: kubelet's log_directory joined with the container's log_path. */
  path: string;
  /** Longer lines are cut into P records. Defaults to DEFAULT_MAX_LINE_BYTES (16 KiB). */
  maxLineBytes?: number;
  /** Nanoseconds since the epoch; tests pass a fixed clock. Defaults to systemClockNs(). */
  now?: EpochNsClock;
  /**
   * A write or read failed. The writer goes on (it never throws from a stream event);
   * the composition root logs these. Defaults to process.emitWarning.
   */
  onError?: (error: LogWriteError | LogSourceError) => void;
}

interface Source {
  readonly stream: LogStreamName;
  readonly readable: Readable;
  readonly splitter: LineSplitter;
  done: boolean;
  finish(error?: unknown): void;
}

/**
 * Writes a container's stdout and stderr to its log file in the CRI format (see
 * cri-log-format.ts and docs/container-logs.md).
 *
 * Invariants:
 *   - each read chunk becomes one write of whole records, so records of the two streams
 *     interleave but never split one another;
 *   - memory per stream is one LineSplitter (max line + 1 byte) plus what the file stream
 *     queues: when the file stream reports it is full, every source is paused until 'drain';
 *   - reopen() pauses the sources, so every record read before it goes to the old file
 *     and every record read after it to the new one.
 */
export class CriLogWriter {
  /** Resolves once every attached stream has ended and its records reached the file. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  /** undefined only while reopen() swaps files; records read then wait in `held`. */
  private file: WriteStream | undefined;
  private held: Buffer[] = [];
  private broken = false;
  private blocked = false;
  private reopening = false;
  private closeRequested = false;
  private closing: Promise<void> | undefined;
  private serial: Promise<unknown> = Promise.resolve();
  private readonly sources = new Set<Source>();
  private attachedAny = false;
  private drained = false;
  private inflightWrites = 0;
  private readonly afterWrite = (): void => {
    this.inflightWrites--;
    this.checkDrained();
  };

  private constructor(
    readonly path: string,
    readonly maxLineBytes: number,
    private readonly now: EpochNsClock,
    private readonly onError: (error: LogWriteError | LogSourceError) => void,
    file: FileHandle,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.install(file);
  }

  /** Opens (appends to, or creates with mode 0640) the log file; its directory must exist. */
  static async open(o: CriLogWriterOptions): Promise<CriLogWriter> {
    const maxLineBytes = o.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1)
      throw new InvalidArgumentError('maxLineBytes', `must be a positive integer, got ${maxLineBytes}`);
    const file = await openLogFile(o.path);
    return new CriLogWriter(
      o.path,
      maxLineBytes,
      o.now ?? systemClockNs(),
      o.onError ?? ((e) => process.emitWarning(e)),
      file,
    );
  }

  /**
   * Copies `readable` into the log as `stream` until it ends. The writer owns the stream
   * from now on: it pauses and resumes it, and close() destroys it if it has not ended.
   */
  attach(stream: LogStreamName, readable: Readable): void {
    if (this.closeRequested || this.drained) throw new LogWriterClosedError(this.path, 'attach');
    const splitter = new LineSplitter(this.maxLineBytes);
    const onData = (chunk: Buffer | string): void => {
      this.writePieces(stream, splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    };
    const source: Source = {
      stream,
      readable,
      splitter,
      done: false,
      finish: (error?: unknown) => {
        if (source.done) return;
        source.done = true;
        readable.off('data', onData);
        this.writePieces(stream, splitter.end());
        if (error !== undefined) this.onError(new LogSourceError(this.path, stream, { cause: error }));
        this.sources.delete(source);
        this.checkDrained();
      },
    };
    this.sources.add(source);
    this.attachedAny = true;
    readable.on('data', onData);
    readable.once('end', () => source.finish());
    // Stays attached after finish: a late 'error' from a stream we own must not crash the process.
    readable.on('error', (e) => source.finish(e));
    readable.once('close', () => source.finish());
    if (readable.readableEnded || readable.destroyed) queueMicrotask(() => source.finish());
    this.setFlowing(source);
  }

  /**
   * ReopenContainerLog: after kubelet renamed the file, write on at the same path. The new
   * file is opened before the old one is closed, so a failure (the directory is gone)
   * leaves the old file in use and is reported to the caller, as containerd does.
   */
  reopen(): Promise<void> {
    if (this.closeRequested) return Promise.reject(new LogWriterClosedError(this.path, 'reopen'));
    const run = this.serial.then(() => this.swapFile());
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops reading (streams still attached are destroyed; what they had buffered is written
   * as P records), flushes, and closes the file. Idempotent.
   */
  close(): Promise<void> {
    this.closeRequested = true;
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async swapFile(): Promise<void> {
    if (this.closeRequested) throw new LogWriterClosedError(this.path, 'reopen');
    this.reopening = true;
    this.updateFlow();
    try {
      const next = await openLogFile(this.path);
      const previous = this.file!;
      this.file = undefined;
      await endFile(previous);
      this.install(next);
      const held = this.held;
      this.held = [];
      for (const records of held) this.write(records);
    } finally {
      this.reopening = false;
      this.updateFlow();
      this.checkDrained();
    }
  }

  private async shutdown(): Promise<void> {
    await this.serial;
    // oxlint-disable-next-line no-useless-spread -- finish() deletes the source: iterate over a copy
    for (const source of [...this.sources]) {
      source.finish();
      source.readable.destroy();
    }
    if (this.file) await endFile(this.file);
    this.drained = true;
    this.resolveClosed();
  }

  private install(handle: FileHandle): void {
    const file = handle.createWriteStream();
    file.on('error', (e) => {
      if (this.file === file) {
        // Drop output rather than stall the container; the next reopen() starts afresh.
        this.broken = true;
        this.blocked = false;
        this.updateFlow();
      }
      this.onError(new LogWriteError(this.path, { cause: e }));
    });
    file.on('drain', () => {
      if (this.file !== file || !this.blocked) return;
      this.blocked = false;
      this.updateFlow();
    });
    this.file = file;
    this.broken = false;
    this.blocked = false;
  }

  private writePieces(stream: LogStreamName, pieces: LogPiece[]): void {
    if (pieces.length === 0) return;
    // One time per read: the moment these bytes arrived, shared by the records they complete.
    this.write(formatRecords(formatRfc3339Nano(this.now()), stream, pieces));
  }

  private write(records: Buffer): void {
    if (this.file === undefined) {
      this.held.push(records);
      return;
    }
    if (this.broken) return;
    this.inflightWrites++;
    if (!this.file.write(records, this.afterWrite) && !this.blocked) {
      this.blocked = true;
      this.updateFlow();
    }
  }

  private updateFlow(): void {
    for (const source of this.sources) this.setFlowing(source);
  }

  private setFlowing(source: Source): void {
    if (source.done) return;
    if (this.blocked || this.reopening) source.readable.pause();
    else source.readable.resume();
  }

  private checkDrained(): void {
    if (this.drained || !this.attachedAny || this.sources.size > 0) return;
    if (this.inflightWrites > 0 || this.reopening || this.held.length > 0) return;
    this.drained = true;
    this.resolveClosed();
  }
}

async function openLogFile(path: string): Promise<FileHandle> {
  try {
    // O_NOFOLLOW: a symlink planted at the log file's name is refused, not followed to a host file.
    return await open(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW,
      DEFAULT_LOG_FILE_MODE,
    );
  } catch (e) {
    // With O_CREAT, ENOENT can only mean a missing directory on the way to the file.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new LogDirectoryNotFoundError(path, dirname(path), { cause: e });
    throw new LogFileOpenError(path, { cause: e });
  }
}

/** Ends the stream and waits until its queued writes are done and its descriptor is closed. */
function endFile(file: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (file.closed) return resolve();
    file.once('close', () => resolve());
    if (!file.writableEnded && !file.destroyed) file.end();
  });
}
