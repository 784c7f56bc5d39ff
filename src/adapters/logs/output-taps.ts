import { Readable } from 'node:stream';
import type { LogStreamName } from './cri-log-format.js';

/** How far (bytes per stream) an attached client may fall behind before output is dropped for it. */
export const DEFAULT_ATTACH_MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * One attached client's copy of one of a container's output streams: the raw bytes, as
 * the container wrote them, from the moment of the attach.
 *
 * The container and its log never wait for it. While the client is more than
 * `maxBufferedBytes` behind, whole chunks are dropped for it (counted in `dropped`), as a
 * terminal that cannot keep up loses output rather than stalling the program.
 */
export class OutputCopy extends Readable {
  private droppedBytes = 0;

  constructor(private readonly maxBufferedBytes: number) {
    super({ highWaterMark: maxBufferedBytes });
  }

  /** Bytes dropped because the client was too far behind. */
  get dropped(): number {
    return this.droppedBytes;
  }

  override _read(): void {
    // Pushed by offer(); nothing to pull.
  }

  offer(chunk: Buffer): void {
    if (this.destroyed || this.readableEnded) return;
    if (this.readableLength + chunk.length > this.maxBufferedBytes) {
      this.droppedBytes += chunk.length;
      return;
    }
    this.push(chunk);
  }

  /** The container's stream ended: the copy ends once the client has read what it holds. */
  finish(): void {
    if (!this.destroyed && !this.readableEnded) this.push(null);
  }
}

/** What an attached client gets: a copy per stream asked for, and the end of the container's output. */
export interface OutputTap {
  stdout?: OutputCopy;
  stderr?: OutputCopy;
  /** Resolves when the container's output has ended (it exited, or its log stopped being read). */
  readonly ended: Promise<void>;
  /** Stops copying to this client; its copies end. */
  close(): void;
}

/** The attached clients of one running container's output, fed by whatever reads the output FIFOs. */
export class OutputTaps {
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;
  private readonly running: Set<LogStreamName>;
  private readonly copies = new Map<LogStreamName, Set<OutputCopy>>();

  /** `streams`: the output streams the container has (stdout only with a tty). */
  constructor(streams: readonly LogStreamName[]) {
    this.running = new Set(streams);
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    for (const stream of streams) this.copies.set(stream, new Set());
    if (this.running.size === 0) this.resolveEnded();
  }

  feed(stream: LogStreamName, chunk: Buffer): void {
    for (const copy of this.copies.get(stream) ?? []) copy.offer(chunk);
  }

  /** `stream` has ended: every copy of it ends too. */
  end(stream: LogStreamName): void {
    if (!this.running.delete(stream)) return;
    for (const copy of this.copies.get(stream) ?? []) copy.finish();
    this.copies.get(stream)?.clear();
    if (this.running.size === 0) this.resolveEnded();
  }

  /** A tap on the streams asked for; a stream the container does not have (or that ended) gives an ended copy. */
  tap(streams: { stdout: boolean; stderr: boolean }, maxBufferedBytes = DEFAULT_ATTACH_MAX_BUFFERED_BYTES): OutputTap {
    const made: Array<[LogStreamName, OutputCopy]> = [];
    const open = (stream: LogStreamName): OutputCopy => {
      const copy = new OutputCopy(maxBufferedBytes);
      const set = this.copies.get(stream);
      if (set && this.running.has(stream)) set.add(copy);
      else copy.finish();
      made.push([stream, copy]);
      return copy;
    };
    const tap: OutputTap = {
      ended: this.ended,
      close: () => {
        for (const [stream, copy] of made) {
          this.copies.get(stream)?.delete(copy);
          copy.finish();
        }
      },
    };
    if (streams.stdout) tap.stdout = open('stdout');
    if (streams.stderr) tap.stderr = open('stderr');
    return tap;
  }
}
