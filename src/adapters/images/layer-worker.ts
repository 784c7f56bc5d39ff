import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { isMainThread, parentPort, type MessagePort } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { extractLayer, type ExtractTarget } from './layer-extractor.js';
import { readTar } from './tar-reader.js';
import { serializeLayerError, type ToLayerWorker, type FromLayerWorker } from './layer-protocol.js';

/*
 * The thread that turns layer blobs into snapshot directories (started by
 * src/adapters/images/layer-unpacker.ts). The main thread fetches a blob and checks its
 * digest; the bytes come here in pieces, and here they are gunzipped, hashed into the
 * diff id, read as a tar and written out. Per byte that is most of a pull's work, and
 * none of it then competes with the main thread's gRPC, HTTP and events.
 *
 * A job decodes as soon as its bytes arrive, holding up to DECODED_AHEAD_BYTES of tar
 * until it is told where to extract: the next layers decode while one is written.
 * Every compressed piece taken from a job's input is credited back, so the main thread
 * never has more than its window of a job's bytes in flight.
 */

/** Tar of a layer that waits for its turn decoded ahead, at most. */
const DECODED_AHEAD_BYTES = 32 * 1024 * 1024;
/** gunzip's output pieces: far above zlib's 16 KiB default, since each is a trip to the thread pool and back. */
const GUNZIP_CHUNK_BYTES = 1024 * 1024;

class Job {
  private readonly input = new Readable({ read: () => undefined, highWaterMark: 0 });
  private readonly tar: Transform;
  private diffId: string | undefined;
  private settled = false;
  private extracting = false;

  constructor(
    private readonly port: MessagePort,
    private readonly id: number,
    compression: 'gzip' | 'none',
  ) {
    const credit = new Transform({
      transform: (chunk: Buffer, _encoding, callback: TransformCallback) => {
        this.post({ op: 'credit', id, bytes: chunk.length });
        callback(null, chunk);
      },
    });
    const hash = createHash('sha256');
    this.tar = new Transform({
      readableHighWaterMark: DECODED_AHEAD_BYTES,
      transform(chunk: Buffer, _encoding, callback: TransformCallback) {
        hash.update(chunk);
        callback(null, chunk);
      },
      flush: (callback: TransformCallback) => {
        this.diffId = `sha256:${hash.digest('hex')}`;
        callback();
      },
    });
    const stages =
      compression === 'gzip'
        ? [this.input, credit, createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES }), this.tar]
        : [this.input, credit, this.tar];
    // A failure of any stage reaches the tar's reader, or fails the job when nobody reads yet.
    pipeline(stages, (error) => {
      if (error && !this.extracting) this.fail(error);
    });
  }

  data(bytes: ArrayBuffer): void {
    this.input.push(Buffer.from(bytes));
  }

  end(): void {
    this.input.push(null);
  }

  extract(target: ExtractTarget): void {
    if (this.settled) return;
    this.extracting = true;
    extractLayer(readTar(this.tar), target)
      .then(() => {
        if (this.diffId === undefined) throw new Error('the layer was not read to its end');
        this.settle({ op: 'done', id: this.id, diffId: this.diffId });
      })
      .catch((error: unknown) => this.fail(error));
  }

  /** Stops reading; the job settles (failed) once nothing of it touches the disk any more. */
  abort(): void {
    const stopped = new Error('the pull stopped reading this layer');
    this.input.destroy(stopped);
    this.tar.destroy(stopped);
    if (!this.extracting) this.fail(stopped);
  }

  private fail(error: unknown): void {
    this.settle({ op: 'failed', id: this.id, error: serializeLayerError(error) });
  }

  private settle(message: FromLayerWorker): void {
    if (this.settled) return;
    this.settled = true;
    this.tar.destroy();
    this.post(message);
    jobs.delete(this.id);
  }

  private post(message: FromLayerWorker): void {
    this.port.postMessage(message);
  }
}

const jobs = new Map<number, Job>();

function handle(port: MessagePort, message: ToLayerWorker): void {
  if (message.op === 'open') {
    jobs.set(message.id, new Job(port, message.id, message.compression));
    return;
  }
  const job = jobs.get(message.id);
  if (!job) return; // settled already (failed on its own); the main thread hears that
  switch (message.op) {
    case 'data':
      return job.data(message.bytes);
    case 'end':
      return job.end();
    case 'extract':
      return job.extract(message.target);
    case 'abort':
      return job.abort();
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (message: ToLayerWorker) => handle(port, message));
}
