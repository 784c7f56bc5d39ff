import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { ExtractTarget } from './layer-extractor.js';
import { deserializeLayerError, isLayerDataError, type FromLayerWorker, type ToLayerWorker } from './layer-protocol.js';

/*
 * The main thread's side of the layer worker (src/adapters/images/layer-worker.ts): one
 * worker thread per process, started with the first layer and kept (unreferenced, so it
 * never holds the process open) for the next pull. A LayerJob reads a blob here (the
 * source checks its digest as it goes), sends its bytes over in pieces of
 * SEND_PIECE_BYTES, at most IN_FLIGHT_BYTES ahead of what the worker has taken, and
 * hears back the layer's diff id once the worker wrote it out.
 *
 * A job's outcome waits for both sides: the blob must have ended without error (so its
 * digest matched) and the worker must have finished or given up. After an error the
 * worker's job is stopped and waited for, so when extract() rejects nothing writes into
 * the snapshot any more and it can be removed.
 */

/** Compressed bytes per message: one copy into a fresh buffer, whose memory is then handed over, not copied. */
const SEND_PIECE_BYTES = 1024 * 1024;
/** A job's compressed bytes sent and not yet taken by the worker, at most. */
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;

type Settled = { ok: true; diffId: string } | { ok: false; error: Error };

class LayerWorker {
  private readonly worker: Worker;
  private readonly jobs = new Map<number, LayerJob>();
  private nextId = 1;
  dead = false;

  constructor() {
    this.worker = new Worker(new URL('./layer-worker.js', import.meta.url));
    this.worker.unref();
    this.worker.on('message', (message: FromLayerWorker) => this.jobs.get(message.id)?.receive(message));
    const die = (why: string): void => {
      if (this.dead) return;
      this.dead = true;
      for (const job of this.jobs.values())
        job.receive({ op: 'failed', id: 0, error: { name: 'Error', message: `the layer worker ${why}` } });
      this.jobs.clear();
    };
    this.worker.on('error', (error) => die(`failed: ${error.message}`));
    this.worker.on('exit', (code) => die(`exited with code ${code}`));
  }

  open(blob: Readable, compression: 'gzip' | 'none', onBytes: (done: number) => void): LayerJob {
    const id = this.nextId++;
    const job = new LayerJob(this, id, blob, onBytes);
    this.jobs.set(id, job);
    if (this.jobs.size === 1) this.worker.ref();
    this.post({ op: 'open', id, compression });
    job.start();
    return job;
  }

  post(message: ToLayerWorker, transfer?: ArrayBuffer[]): void {
    if (!this.dead) this.worker.postMessage(message, transfer);
  }

  forget(id: number): void {
    this.jobs.delete(id);
    if (this.jobs.size === 0) this.worker.unref();
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

let shared: LayerWorker | undefined;

/** The process's layer worker, started on first use (and again after it died). */
function layerWorker(): LayerWorker {
  if (!shared || shared.dead) shared = new LayerWorker();
  return shared;
}

/** Stops the layer worker, if one runs; the next layer starts another. */
export async function stopLayerWorker(): Promise<void> {
  const worker = shared;
  shared = undefined;
  await worker?.terminate();
}

/**
 * Starts sending `blob` (a layer, compressed as `compression`) to the layer worker,
 * which decodes it ahead of extract(). `onBytes` hears the compressed bytes read.
 */
export function openLayerJob(blob: Readable, compression: 'gzip' | 'none', onBytes: (done: number) => void): LayerJob {
  return layerWorker().open(blob, compression, onBytes);
}

/** One layer on its way through the worker. */
export class LayerJob {
  private inFlight = 0;
  private creditWaiter: (() => void) | undefined;
  /** After the worker gave up: the rest of the blob is read only to see whether it matched its digest. */
  private discarding = false;
  private pumped!: Promise<void>;
  private readonly settled: Promise<Settled>;
  private resolveSettled!: (s: Settled) => void;

  constructor(
    private readonly worker: LayerWorker,
    private readonly id: number,
    private readonly blob: Readable,
    private readonly onBytes: (done: number) => void,
  ) {
    this.settled = new Promise((resolve) => (this.resolveSettled = resolve));
  }

  start(): void {
    this.pumped = this.pump();
    this.pumped.catch(() => this.worker.post({ op: 'abort', id: this.id }));
  }

  /** Called by LayerWorker with the worker's messages for this job. */
  receive(message: FromLayerWorker): void {
    if (message.op === 'credit') {
      this.inFlight -= message.bytes;
      this.wake();
      return;
    }
    this.worker.forget(this.id);
    this.discarding = true;
    this.wake();
    this.resolveSettled(
      message.op === 'done'
        ? { ok: true, diffId: message.diffId }
        : { ok: false, error: deserializeLayerError(message.error) },
    );
  }

  /**
   * Extracts the layer into `target`; its diff id. Rejects with the blob's error when
   * the blob failed (a digest mismatch included), else with the worker's; either way
   * only once the worker stopped writing.
   */
  async extract(target: ExtractTarget): Promise<string> {
    this.worker.post({ op: 'extract', id: this.id, target });
    const [pumped, settled] = await Promise.all([
      this.pumped.then(
        () => undefined,
        (error: unknown) => error ?? new Error('the layer blob failed'),
      ),
      this.settled,
    ]);
    if (pumped !== undefined) throw pumped;
    if (!settled.ok) throw settled.error;
    return settled.diffId;
  }

  /** Stops reading the blob (with `error` as the reason) and the worker's job. */
  destroy(error?: Error): void {
    this.blob.destroy(error);
    this.worker.post({ op: 'abort', id: this.id });
  }

  private wake(): void {
    const waiter = this.creditWaiter;
    this.creditWaiter = undefined;
    waiter?.();
  }

  private async pump(): Promise<void> {
    let seen = 0;
    let piece = Buffer.allocUnsafeSlow(SEND_PIECE_BYTES);
    let filled = 0;
    const send = async (): Promise<void> => {
      if (filled === 0 || this.discarding) return;
      // A full piece owns its memory, which moves to the worker; the last one is cut to size.
      const bytes = (filled === piece.buffer.byteLength ? piece.buffer : piece.buffer.slice(0, filled)) as ArrayBuffer;
      this.inFlight += filled;
      this.worker.post({ op: 'data', id: this.id, bytes }, [bytes]);
      piece = Buffer.allocUnsafeSlow(SEND_PIECE_BYTES);
      filled = 0;
      while (this.inFlight > IN_FLIGHT_BYTES && !this.discarding)
        await new Promise<void>((resolve) => (this.creditWaiter = resolve));
    };
    try {
      for await (const chunk of this.blob) {
        const buffer = chunk as Buffer;
        seen += buffer.length;
        this.onBytes(seen);
        if (this.discarding) {
          // A decode failure: only the digest check at the blob's end tells whether the blob is to blame.
          const settled = await this.settled;
          if (settled.ok || !isLayerDataError(settled.error)) break;
          continue;
        }
        for (let at = 0; at < buffer.length; ) {
          const take = Math.min(buffer.length - at, SEND_PIECE_BYTES - filled);
          buffer.copy(piece, filled, at, at + take);
          filled += take;
          at += take;
          if (filled === SEND_PIECE_BYTES) await send();
        }
      }
      await send();
      this.worker.post({ op: 'end', id: this.id });
    } finally {
      this.blob.destroy();
    }
  }
}
