import type { Duplex } from 'node:stream';
import type {
  PortForwardStreams,
  RemoteCommandStreams,
  SessionEnd,
  SessionHandlers,
} from '../../src/adapters/streaming/contracts.js';
import type { StreamingOptions } from '../../src/adapters/streaming/streaming-options.js';

/*
 * In-memory session handlers for the streaming server's tests: no container, a tiny
 * command language instead.
 *
 *   cat            stdin to stdout until stdin ends, then exit 0
 *   exit N         "out\n" on stdout, "err\n" on stderr, then exit N
 *   resize K       one "WxH\n" line on stdout per terminal size, K of them, then exit 0
 *   big N          N bytes on stdout, then exit 0
 *   hang           nothing until the session ends
 *   throw          the handler fails
 *   return         the handler returns without finish()
 *
 * Port forward: port 1 refuses (kubelet's message on the error stream); any other port
 * echoes what it reads until the client half-closes.
 */

export type FakePayload = StreamingOptions & { readonly command: readonly string[] };

export interface FakeSessionRecord {
  readonly kind: 'exec' | 'attach' | 'portforward';
  readonly command?: readonly string[];
  readonly transport: string;
  readonly protocol?: string;
  end?: SessionEnd;
  bytes?: { in: number; out: number };
  requests: number;
}

export class FakeSessionHandlers implements SessionHandlers<FakePayload> {
  readonly sessions: FakeSessionRecord[] = [];
  #waiters: Array<() => void> = [];

  /** Resolves once `count` sessions have ended. */
  async ended(count: number): Promise<FakeSessionRecord[]> {
    while (this.sessions.filter((s) => s.end).length < count) await new Promise<void>((r) => this.#waiters.push(r));
    return this.sessions.filter((s) => s.end);
  }

  async exec(payload: FakePayload, streams: RemoteCommandStreams): Promise<void> {
    this.#record(
      { kind: 'exec', command: payload.command, transport: streams.transport, protocol: streams.protocol, requests: 0 },
      streams,
    );
    await runCommand(payload.command, streams);
  }

  async attach(payload: FakePayload, streams: RemoteCommandStreams): Promise<void> {
    this.#record(
      {
        kind: 'attach',
        command: payload.command,
        transport: streams.transport,
        protocol: streams.protocol,
        requests: 0,
      },
      streams,
    );
    await runCommand(payload.command, streams);
  }

  async portForward(_payload: FakePayload, streams: PortForwardStreams): Promise<void> {
    const record = this.#record({ kind: 'portforward', transport: streams.transport, requests: 0 }, streams);
    streams.onRequest(({ port, data, error }) => {
      record.requests++;
      if (port === 1) {
        error.write(`error forwarding port 1 to pod fake, uid : dial tcp4 127.0.0.1:1: connect: connection refused`);
        data.end();
        data.resume();
        return;
      }
      echo(data);
    });
    await streams.closed;
  }

  #record(record: FakeSessionRecord, streams: RemoteCommandStreams | PortForwardStreams): FakeSessionRecord {
    this.sessions.push(record);
    void streams.closed.then(
      (end) => {
        record.end = end;
        record.bytes = streams.bytes();
        for (const wake of this.#waiters.splice(0)) wake();
      },
      () => undefined,
    );
    return record;
  }
}

function echo(data: Duplex): void {
  data.on('data', (chunk: Buffer) => {
    if (!data.write(chunk)) {
      data.pause();
      data.once('drain', () => data.resume());
    }
  });
  data.once('end', () => data.end());
}

async function runCommand(command: readonly string[], streams: RemoteCommandStreams): Promise<void> {
  const [name, arg] = command;
  switch (name) {
    case 'cat': {
      if (streams.stdin && streams.stdout) {
        for await (const chunk of streams.stdin) await write(streams.stdout, chunk as Buffer);
      }
      return streams.finish({ exitCode: 0 });
    }
    case 'exit':
      if (streams.stdout) await write(streams.stdout, Buffer.from('out\n'));
      if (streams.stderr) await write(streams.stderr, Buffer.from('err\n'));
      return streams.finish({ exitCode: Number(arg) });
    case 'resize': {
      let left = Number(arg);
      await new Promise<void>((resolve) => {
        streams.onResize(({ width, height }) => {
          if (left <= 0) return;
          if (streams.stdout) streams.stdout.write(`${width}x${height}\n`);
          if (--left === 0) resolve();
        });
      });
      return streams.finish({ exitCode: 0 });
    }
    case 'big': {
      const chunk = Buffer.alloc(64 * 1024, 'x');
      for (let left = Number(arg); left > 0; left -= chunk.length)
        if (streams.stdout) await write(streams.stdout, left >= chunk.length ? chunk : chunk.subarray(0, left));
      return streams.finish({ exitCode: 0 });
    }
    case 'hang':
      await streams.closed;
      return;
    case 'throw':
      throw new Error('boom');
    case 'return':
      if (streams.stdout) await write(streams.stdout, Buffer.from('bye\n'));
      return;
    default:
      return streams.finish({ error: `unknown fake command ${name}` });
  }
}

function write(stream: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (stream.write(chunk)) resolve();
    else stream.once('drain', () => resolve());
  });
}
