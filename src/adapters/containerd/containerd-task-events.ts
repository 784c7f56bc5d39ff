import { randomBytes } from 'node:crypto';
import { status as Status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { InvalidArgumentError } from '../../domain/errors.js';
import type { ContainerdApi } from './containerd-api.js';
import { ContainerdCallError, unaryCall } from './containerd-calls.js';
import { formatTimestamp } from './containerd-tasks.js';
import type { WireAny, WireTimestamp } from './containerd-wire.js';

/*
 * containerd's task exits and OOMs as a stream of typed values, kept alive across
 * containerd restarts.
 *
 * Subscribe sends no response headers until the first event, so an open stream does not
 * show that containerd has registered it. After each Subscribe we publish a probe on a
 * topic only this subscription asks for, and count the subscription live once the probe
 * comes back: from then on no exit is missed. Exits before that are only visible through
 * taskState, which is why every (re)subscription is announced.
 */

/** First wait before subscribing again after the stream broke; doubles up to the max. */
export const DEFAULT_RESUBSCRIBE_INITIAL_BACKOFF_MS = 100;
/** Longest wait between two subscribe attempts while containerd is down. */
export const DEFAULT_RESUBSCRIBE_MAX_BACKOFF_MS = 5_000;
/** How long a fresh subscription may take to deliver its probe before it counts as failed. */
export const DEFAULT_SUBSCRIBE_PROBE_TIMEOUT_MS = 5_000;
/** Interval between probes: one published before containerd registered the stream is lost. */
const PROBE_INTERVAL_MS = 100;

export const TASK_EXIT_TOPIC = '/tasks/exit';
export const TASK_OOM_TOPIC = '/tasks/oom';
const TASK_EXIT_TYPE = 'containerd.events.TaskExit';
const TASK_OOM_TYPE = 'containerd.events.TaskOOM';
const EMPTY_ANY: WireAny = { type_url: 'types.googleapis.com/google.protobuf.Empty', value: Buffer.alloc(0) };

/** What the subscription yields. */
export type TaskEvent =
  /** A process of a task exited; `execId` is '' for the task's init process (the container). */
  | { kind: 'exit'; containerId: string; execId: string; pid: number; exitCode: number; exitedAt: string }
  /** The kernel's OOM killer acted in the container's cgroup; the exit follows separately. */
  | { kind: 'oom'; containerId: string }
  /** The first subscription is live: exits before this are only visible through taskState. */
  | { kind: 'subscribed' }
  /** The stream broke (containerd stopped or restarted) and is live again after `downForMs`. */
  | { kind: 'resubscribed'; downForMs: number };

export interface ContainerdTaskEventsOptions {
  api: ContainerdApi;
  /** The containerd namespace whose events are wanted; defaults to `api.namespace`. */
  namespace?: string;
  logger?: Logger;
  backoff?: { initialMs?: number; maxMs?: number };
  probeTimeoutMs?: number;
}

/**
 * The filters for Events.Subscribe: one string per topic, OR-ed by containerd; within one,
 * the comma ANDs. Values are double-quoted because containerd's filter syntax reads an
 * unquoted `/` as the start of a /quoted/ value.
 */
export function taskEventFilters(namespace: string, probeTopic?: string): string[] {
  const topics = [TASK_EXIT_TOPIC, TASK_OOM_TOPIC, ...(probeTopic ? [probeTopic] : [])];
  return topics.map((topic) => `namespace==${JSON.stringify(namespace)},topic==${JSON.stringify(topic)}`);
}

/**
 * Task exits and OOMs of one namespace, e.g.
 * `events.start(); for await (const e of events) ...; await events.stop()`.
 * One consumer iterates; events queue until it reads them. When the stream breaks it
 * subscribes again with a bounded exponential backoff, forever until stop().
 */
export class ContainerdTaskEvents implements AsyncIterable<TaskEvent> {
  private readonly api: ContainerdApi;
  private readonly namespace: string;
  private readonly logger: Logger;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly probeTimeoutMs: number;
  private readonly abort = new AbortController();
  private readonly queue: TaskEvent[] = [];
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private iterated = false;

  constructor(options: ContainerdTaskEventsOptions) {
    this.api = options.api;
    this.namespace = options.namespace ?? options.api.namespace;
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({
      component: 'containerd-task-events',
      namespace: this.namespace,
    });
    this.initialBackoffMs = positive(
      'backoff.initialMs',
      options.backoff?.initialMs ?? DEFAULT_RESUBSCRIBE_INITIAL_BACKOFF_MS,
    );
    this.maxBackoffMs = positive('backoff.maxMs', options.backoff?.maxMs ?? DEFAULT_RESUBSCRIBE_MAX_BACKOFF_MS);
    this.probeTimeoutMs = positive('probeTimeoutMs', options.probeTimeoutMs ?? DEFAULT_SUBSCRIBE_PROBE_TIMEOUT_MS);
    if (this.maxBackoffMs < this.initialBackoffMs)
      throw new InvalidArgumentError('backoff.maxMs', 'must not be below backoff.initialMs');
    if (!this.namespace) throw new InvalidArgumentError('namespace', 'must not be empty');
  }

  /** Starts subscribing; containerd may be down, the first subscription then waits for it. */
  start(): void {
    if (this.loop || this.abort.signal.aborted) throw new Error('ContainerdTaskEvents can be started once');
    this.loop = this.run();
  }

  /** Cancels the stream and any wait; the iteration ends after the events already queued. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TaskEvent> {
    if (this.iterated) throw new Error('ContainerdTaskEvents has one consumer');
    this.iterated = true;
    for (;;) {
      const next = this.queue.shift();
      if (next) yield next;
      else if (this.abort.signal.aborted) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private push(event: TaskEvent): void {
    this.queue.push(event);
    this.wake?.();
    this.wake = undefined;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let brokenAt: number | undefined;
    while (!this.abort.signal.aborted) {
      const ended = await this.subscribeOnce(() => {
        this.push(
          brokenAt === undefined ? { kind: 'subscribed' } : { kind: 'resubscribed', downForMs: Date.now() - brokenAt },
        );
        if (brokenAt !== undefined) this.logger.info({ downForMs: Date.now() - brokenAt }, 'task event stream is back');
        brokenAt = undefined;
        failures = 0;
      });
      if (this.abort.signal.aborted) break;
      const retryInMs = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** failures);
      if (ended.live) brokenAt = Date.now();
      failures += 1;
      // Expected while containerd is down, so no stack: the code and message say enough.
      this.logger.warn(
        { ...describe(ended.error), wasLive: ended.live, failures, retryInMs },
        'task event stream broke; subscribing again',
      );
      await sleep(retryInMs, this.abort.signal);
    }
  }

  /**
   * One Subscribe, read until it ends. `onLive` runs when the probe comes back; the result
   * says whether it did and why the stream ended.
   */
  private subscribeOnce(onLive: () => void): Promise<{ live: boolean; error: unknown }> {
    const probeTopic = `/cri-ledger/task-events/${randomBytes(8).toString('hex')}`;
    const filters = taskEventFilters(this.namespace, probeTopic);
    // No deadline: the stream lasts until containerd goes away or stop() cancels it.
    const stream = (this.api.events['Subscribe'] as Function).call(this.api.events, {
      filters,
    }) as ClientReadableStream<WireEnvelope>;
    let live = false;
    let ended = false;
    let probes: NodeJS.Timeout | undefined;
    let probeDeadline: NodeJS.Timeout | undefined;
    return new Promise((resolve) => {
      const finish = (error: unknown): void => {
        if (ended) return;
        ended = true;
        clearInterval(probes);
        clearTimeout(probeDeadline);
        this.abort.signal.removeEventListener('abort', cancel);
        stream.removeAllListeners('data');
        resolve({ live, error });
        stream.cancel();
      };
      const cancel = (): void => finish(this.abort.signal.reason);
      this.abort.signal.addEventListener('abort', cancel, { once: true });
      stream.on('data', (envelope: WireEnvelope) => {
        if (envelope.topic !== probeTopic) return this.deliver(envelope);
        if (live) return;
        live = true;
        clearInterval(probes);
        clearTimeout(probeDeadline);
        onLive();
      });
      stream.on('error', (error: ServiceError) =>
        finish(
          new ContainerdCallError('Events.Subscribe', error.code ?? Status.UNKNOWN, error.details ?? error.message, {
            cause: error,
          }),
        ),
      );
      stream.on('end', () => finish(new Error('containerd ended the event stream')));
      const probe = (): void => {
        unaryCall(
          this.api.events,
          'Publish',
          { topic: probeTopic, event: EMPTY_ANY },
          { timeoutMs: this.probeTimeoutMs, signal: this.abort.signal },
        ).catch((error: unknown) => {
          if (!live && !this.abort.signal.aborted) finish(error);
        });
      };
      probe();
      probes = setInterval(probe, PROBE_INTERVAL_MS);
      probeDeadline = setTimeout(
        () => finish(new Error(`no probe came back within ${this.probeTimeoutMs} ms`)),
        this.probeTimeoutMs,
      );
    });
  }

  private deliver(envelope: WireEnvelope): void {
    const any = envelope.event;
    try {
      const type = any?.type_url.slice(any.type_url.lastIndexOf('/') + 1);
      if (any && type === TASK_EXIT_TYPE) this.push(decodeTaskExit(any.value));
      else if (any && type === TASK_OOM_TYPE) this.push(decodeTaskOom(any.value));
      else
        this.logger.warn(
          { topic: envelope.topic, typeUrl: any?.type_url },
          'ignoring an event the filters should not have passed',
        );
    } catch (err) {
      this.logger.error(
        { err, topic: envelope.topic, payload: any && Buffer.from(any.value).toString('base64') },
        'cannot decode a task event',
      );
    }
  }
}

interface WireEnvelope {
  namespace: string;
  topic: string;
  event: WireAny | null;
}

function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new InvalidArgumentError(field, `must be a positive number of milliseconds, got ${value}`);
  return value;
}

function describe(error: unknown): { code?: number; reason: string } {
  if (error instanceof ContainerdCallError) return { code: error.code, reason: error.message };
  return { reason: error instanceof Error ? error.message : String(error) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/*
 * Payload decoding. proto-loader gives codecs only for request and response messages, so
 * the two payloads are read by hand, as runc-options.ts writes its Any, with the field
 * numbers of proto/containerd/events/task.proto.
 */

type FieldValue = bigint | Buffer;

/** Every field of one message by number, in wire order; fixed-width fields are skipped. */
function readFields(bytes: Buffer): Map<number, FieldValue[]> {
  const fields = new Map<number, FieldValue[]>();
  let at = 0;
  const varint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (at >= bytes.length || shift > 63n) throw new RangeError('truncated or overlong varint');
      const byte = bytes[at++]!;
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const key = varint();
    const [field, wireType] = [Number(key >> 3n), Number(key & 7n)];
    let value: FieldValue | undefined;
    if (wireType === 0) value = varint();
    else if (wireType === 2) {
      const length = Number(varint());
      if (at + length > bytes.length) throw new RangeError(`field ${field} runs past the message`);
      value = bytes.subarray(at, (at += length));
    } else if (wireType === 1 || wireType === 5) at += wireType === 1 ? 8 : 4;
    else throw new RangeError(`unsupported wire type ${wireType} for field ${field}`);
    if (value !== undefined) fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

// proto3: a scalar's last occurrence wins; absent means the default.
function last(fields: Map<number, FieldValue[]>, field: number): FieldValue | undefined {
  return fields.get(field)?.at(-1);
}
function stringField(fields: Map<number, FieldValue[]>, field: number): string {
  const value = last(fields, field);
  return Buffer.isBuffer(value) ? value.toString('utf8') : '';
}
function uintField(fields: Map<number, FieldValue[]>, field: number): number {
  const value = last(fields, field);
  return typeof value === 'bigint' ? Number(BigInt.asUintN(32, value)) : 0;
}

// TaskExit: container_id 1, id 2, pid 3, exit_status 4, exited_at 5 (Timestamp: seconds 1, nanos 2).
function decodeTaskExit(bytes: Buffer): TaskEvent {
  const fields = readFields(bytes);
  const containerId = stringField(fields, 1);
  const id = stringField(fields, 2);
  const stamp = last(fields, 5);
  const time = readFields(Buffer.isBuffer(stamp) ? stamp : Buffer.alloc(0));
  const seconds = last(time, 1);
  const nanos = last(time, 2);
  const exitedAt: WireTimestamp = {
    seconds: typeof seconds === 'bigint' ? String(BigInt.asIntN(64, seconds)) : '0',
    nanos: typeof nanos === 'bigint' ? Number(BigInt.asIntN(32, nanos)) : 0,
  };
  if (!containerId) throw new RangeError('TaskExit without a container_id');
  return {
    kind: 'exit',
    containerId,
    // containerd names the init process by the container id; execs by their exec id.
    execId: id === containerId ? '' : id,
    pid: uintField(fields, 3),
    exitCode: uintField(fields, 4),
    exitedAt: formatTimestamp(exitedAt),
  };
}

// TaskOOM: container_id 1.
function decodeTaskOom(bytes: Buffer): TaskEvent {
  const containerId = stringField(readFields(bytes), 1);
  if (!containerId) throw new RangeError('TaskOOM without a container_id');
  return { kind: 'oom', containerId };
}
