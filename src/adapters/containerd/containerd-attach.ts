import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { FailedPreconditionError, InvalidArgumentError } from '../../domain/errors.js';
import { closeWriter, openFifoWriter } from '../fs/fifo-ends.js';
import type { OutputTap } from '../logs/output-taps.js';
import type { ContainerdApi } from './containerd-api.js';
import { unaryCall } from './containerd-calls.js';
import { ignoreNotFound, unavailableAsRuntimeError } from './containerd-errors.js';
import { checkTerminalSize, ContainerNotRunningError } from './exec-process.js';

/*
 * Attach (the backend of CRI Attach): a client joins a running container's own stdio.
 *
 * - Output: a copy of what the container writes from now on, tapped from the reader that
 *   copies its FIFOs into its CRI log (HostContainerLogs.tapOutput), so the log goes on
 *   while someone is attached, and a slow client loses output rather than stalling the
 *   container or its log (output-taps.ts).
 * - Input: our own write side of the container's stdin FIFO (made at CreateContainer when
 *   the container asked for stdin). The shim holds a write side of its own until
 *   tasks.CloseIO, so an attach that goes away does not close the container's stdin.
 * - When the client's stdin ends, as containerd's CRI does: with stdin_once and no tty,
 *   the container's stdin is closed for good (CloseIO) and the attach goes on until the
 *   container exits; otherwise the attach ends (kubectl#452: a tty's stdin is never closed).
 * - tty containers: one output stream (stdout); resize is tasks.ResizePty on the init process.
 */

/** How an attach ended. */
export type AttachEnd = 'detached' | 'stdin-closed' | 'container-exited';

export interface AttachRequest {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** The container was created with a tty (then there is no stderr). */
  tty: boolean;
  /** The container was created with stdin_once. */
  stdinOnce?: boolean;
}

export interface AttachSession {
  /** Bytes for the container's stdin; end it when the client's stdin ends. */
  readonly stdin?: Writable;
  /** The container's output from the moment of the attach; ends when the attach or the container's output does. */
  readonly stdout?: Readable;
  readonly stderr?: Readable;
  /** The container's terminal size in characters; nothing without a tty. */
  resize(width: number, height: number): Promise<void>;
  /** Leaves the container alone and ends this attach's streams (with stdin_once, its stdin closes). Idempotent. */
  detach(): Promise<void>;
  /** Settles once, with how the attach ended. */
  readonly ended: Promise<AttachEnd>;
  /** Output bytes dropped because the client was too far behind. */
  dropped(): { stdout: number; stderr: number };
}

/** Where a running container's output can be tapped: HostContainerLogs. */
export interface ContainerOutputSource {
  tapOutput(
    containerId: string,
    streams: { stdout: boolean; stderr: boolean },
    maxBufferedBytes?: number,
  ): OutputTap | undefined;
}

export interface ContainerdAttachOptions {
  api: ContainerdApi;
  output: ContainerOutputSource;
  /** The container's stdin FIFO (ContainerFiles.ioFor(id, { stdin: true, ... }).stdin). */
  stdinPath: (containerId: string) => string;
  /** Per stream and client; DEFAULT_ATTACH_MAX_BUFFERED_BYTES. */
  maxBufferedBytes?: number;
}

export class ContainerdAttach {
  /** Containers whose stdin an attach closed (stdin_once): later attaches get no stdin. */
  private readonly stdinClosed = new Set<string>();

  constructor(private readonly o: ContainerdAttachOptions) {}

  /**
   * Joins the running container's stdio. Rejects with InvalidArgumentError,
   * ContainerNotRunningError (its output is not being read), or FailedPreconditionError
   * (stdin asked of a container without one, or whose stdin is closed).
   */
  async attachContainer(containerId: string, request: AttachRequest): Promise<AttachSession> {
    if (!request.stdin && !request.stdout && !request.stderr)
      throw new InvalidArgumentError('streams', 'at least one of stdin, stdout and stderr is required');
    if (request.tty && request.stderr)
      throw new InvalidArgumentError('stderr', 'a tty has one output stream: stderr must be false');
    const tap = this.o.output.tapOutput(
      containerId,
      { stdout: request.stdout, stderr: request.stderr },
      this.o.maxBufferedBytes,
    );
    if (!tap) throw new ContainerNotRunningError(containerId, 'its output is not being read');
    let stdin: Socket | undefined;
    try {
      if (request.stdin) stdin = await this.openStdin(containerId);
    } catch (error) {
      tap.close();
      throw error;
    }
    const closeForGood = (): Promise<void> => {
      this.stdinClosed.add(containerId);
      const closeIo = unaryCall(this.o.api.tasks, 'CloseIO', { container_id: containerId, exec_id: '', stdin: true });
      return unavailableAsRuntimeError(ignoreNotFound(closeIo));
    };
    return new ContainerAttachSession(this.o.api, containerId, request, tap, stdin, closeForGood);
  }

  private async openStdin(containerId: string): Promise<Socket> {
    const path = this.o.stdinPath(containerId);
    const closed = (cause?: unknown): FailedPreconditionError =>
      new FailedPreconditionError(`container ${containerId}'s stdin is closed (stdin_once, or it exited)`, { cause });
    if (this.stdinClosed.has(containerId)) throw closed();
    try {
      return await openFifoWriter(path, 'reader-required');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new FailedPreconditionError(`container ${containerId} was not created with stdin`, { cause: error });
      // No reader: the shim closed its side (CloseIO, or the container is gone).
      if (code === 'ENXIO') throw closed(error);
      throw error;
    }
  }
}

class ContainerAttachSession implements AttachSession {
  readonly stdin?: Socket;
  readonly stdout?: Readable;
  readonly stderr?: Readable;
  readonly ended: Promise<AttachEnd>;
  private resolveEnded!: (how: AttachEnd) => void;
  private done = false;
  private detaching = false;
  private stdinFinished: Promise<void> | undefined;

  constructor(
    private readonly api: ContainerdApi,
    private readonly containerId: string,
    private readonly request: AttachRequest,
    private readonly tap: OutputTap,
    stdin: Socket | undefined,
    private readonly closeForGood: () => Promise<void>,
  ) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
    if (tap.stdout) this.stdout = tap.stdout;
    if (tap.stderr) this.stderr = tap.stderr;
    const exited = (): void => this.end('container-exited');
    tap.ended.then(exited, exited);
    if (stdin) {
      this.stdin = stdin;
      // EPIPE once the container has exited: the attach ends through tap.ended.
      stdin.on('error', () => undefined);
      // The client's stdin ended: as containerd's CRI, the attach ends unless it closed the container's stdin for good.
      const stdinEnded = (): void => {
        if (!this.closesForGood() && !this.detaching) this.end('stdin-closed');
      };
      stdin.once('finish', () => {
        this.finishStdin().then(stdinEnded, stdinEnded);
      });
    }
  }

  async resize(width: number, height: number): Promise<void> {
    checkTerminalSize(width, height);
    if (!this.request.tty) return;
    const request = { container_id: this.containerId, exec_id: '', width, height };
    await unavailableAsRuntimeError(ignoreNotFound(unaryCall(this.api.tasks, 'ResizePty', request)));
  }

  async detach(): Promise<void> {
    this.detaching = true;
    if (this.stdin && !this.done) await this.finishStdin().catch(() => undefined);
    this.end('detached');
  }

  dropped(): { stdout: number; stderr: number } {
    return { stdout: this.tap.stdout?.dropped ?? 0, stderr: this.tap.stderr?.dropped ?? 0 };
  }

  private closesForGood(): boolean {
    return (this.request.stdinOnce ?? false) && !this.request.tty;
  }

  /** Closes our stdin end after what was written; with stdin_once (no tty), the container's stdin too. */
  private finishStdin(): Promise<void> {
    const end = this.stdin!;
    this.stdinFinished ??= closeWriter(end).then(() => (this.closesForGood() ? this.closeForGood() : undefined));
    return this.stdinFinished;
  }

  private end(how: AttachEnd): void {
    if (this.done) return;
    this.done = true;
    this.tap.close();
    this.stdin?.destroy();
    this.resolveEnded(how);
  }
}
