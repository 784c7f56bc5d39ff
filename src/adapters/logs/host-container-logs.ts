import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ContainerIo, ContainerLogs } from '../../commands/ports.js';
import { FailedPreconditionError } from '../../domain/errors.js';
import { CriLogWriter } from './cri-log-writer.js';
import { type OutputTap, OutputTaps } from './output-taps.js';

/** How long detach waits for a stopped container's output to drain before it cuts it off. */
export const DEFAULT_LOG_DRAIN_TIMEOUT_MS = 2_000;

interface Attached {
  writer: CriLogWriter | undefined;
  sockets: Socket[];
  /** Attached clients (CRI Attach) get a copy of what is read, beside the log. */
  taps: OutputTaps;
}

/**
 * ContainerLogs on the host: each running container's stdout and stderr FIFOs are read
 * through libuv pipe handles (epoll; never a thread-pool thread blocked on a read) and
 * copied into its log file by a CriLogWriter.
 *
 * A FIFO is opened O_RDONLY|O_NONBLOCK before the task is created: the shim's open of
 * the write end waits for a reader, and epoll reports no hang-up on a FIFO that has not
 * had a writer yet, so the pipe handle waits for the shim rather than reading an early
 * end-of-file. The shim keeps the write end until the process has exited and its
 * output is copied, so end-of-file on both FIFOs is the end of the container's output,
 * and the writer closes by itself. After a restart the FIFOs of running tasks are
 * opened again the same way.
 * With no log path the output is read and dropped, so a container never blocks on a
 * full pipe, as containerd does.
 *
 * tapOutput() gives attached clients a copy of the raw output while it goes on to the
 * log; a client that falls behind loses output (see output-taps.ts), never the log.
 */
export class HostContainerLogs implements ContainerLogs {
  private readonly attachedById = new Map<string, Attached>();

  constructor(private readonly o: { logger: Logger; drainTimeoutMs?: number }) {}

  async attach(containerId: string, o: { logPath: string; io: ContainerIo }): Promise<void> {
    if (this.attachedById.has(containerId)) return;
    const writer = o.logPath
      ? await CriLogWriter.open({
          path: o.logPath,
          onError: (error) => this.o.logger.warn({ err: error, containerId }, 'container log'),
        })
      : undefined;
    const streams: Array<['stdout' | 'stderr', string]> =
      o.io.terminal || o.io.stderr === o.io.stdout
        ? [['stdout', o.io.stdout]]
        : [
            ['stdout', o.io.stdout],
            ['stderr', o.io.stderr],
          ];
    const sockets: Socket[] = [];
    const taps = new OutputTaps(streams.map(([name]) => name));
    try {
      for (const [name, path] of streams) {
        const socket = new Socket({
          fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK),
          readable: true,
          writable: false,
        });
        socket.on('error', (error) =>
          this.o.logger.warn({ err: error, containerId, stream: name }, 'container output'),
        );
        sockets.push(socket);
        // Before the writer's listener: a tap sees each chunk as the log does, and when the
        // writer pauses the socket (a slow log file) the taps wait with it.
        socket.on('data', (chunk: Buffer) => taps.feed(name, chunk));
        socket.once('close', () => taps.end(name));
        if (writer) writer.attach(name, socket);
        else socket.resume();
      }
    } catch (error) {
      for (const socket of sockets) socket.destroy();
      await writer?.close();
      throw error;
    }
    const entry: Attached = { writer, sockets, taps };
    this.attachedById.set(containerId, entry);
    // The container's output ended (it exited): forget it once everything is written.
    void Promise.all(sockets.map((s) => new Promise((done) => s.once('close', done))))
      .then(() => writer?.closed)
      .then(() => writer?.close())
      .catch(() => undefined)
      .finally(() => {
        if (this.attachedById.get(containerId) === entry) this.attachedById.delete(containerId);
      });
  }

  async abandon(containerId: string): Promise<void> {
    const entry = this.attachedById.get(containerId);
    if (!entry) return;
    this.attachedById.delete(containerId);
    for (const socket of entry.sockets) socket.destroy();
    await entry.writer?.close().catch(() => undefined);
  }

  async reopen(containerId: string): Promise<void> {
    const entry = this.attachedById.get(containerId);
    if (!entry) throw new FailedPreconditionError(`container ${containerId} is not running: its log is not open`);
    await entry.writer?.reopen();
  }

  /**
   * A copy of the running container's output from now on, for an attached client
   * (`maxBufferedBytes` per stream, see OutputCopy); undefined when its output is not
   * being read (it is not running, or the service has not reattached it yet).
   */
  tapOutput(
    containerId: string,
    streams: { stdout: boolean; stderr: boolean },
    maxBufferedBytes?: number,
  ): OutputTap | undefined {
    return this.attachedById.get(containerId)?.taps.tap(streams, maxBufferedBytes);
  }

  attached(containerId: string): boolean {
    return this.attachedById.has(containerId);
  }

  async detach(containerId: string): Promise<void> {
    const entry = this.attachedById.get(containerId);
    if (!entry) return;
    const open = entry.sockets.filter((s) => !s.closed);
    const drained = Promise.all(open.map((s) => new Promise((done) => s.once('close', done)))).then(
      () => entry.writer?.closed,
    );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise(
      (done) => (timer = setTimeout(done, this.o.drainTimeoutMs ?? DEFAULT_LOG_DRAIN_TIMEOUT_MS)),
    );
    await Promise.race([drained, timedOut]).finally(() => clearTimeout(timer));
    await this.abandon(containerId);
  }

  /** Stops copying everything (service shutdown); the shims keep the FIFOs, and a restart reattaches. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.attachedById.keys()].map((id) => this.abandon(id)));
  }
}
