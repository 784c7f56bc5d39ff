import { connect, type JetStreamManager, type JsMsg, type NatsConnection, type OrderedConsumerOptions } from 'nats';
import { nodeSubjects, SUBJECT_PREFIX, subjectCovers, subjectToken } from '../../adapters/bus/nats-subject.js';
import { compileFilter } from '../../adapters/ledger-api/event-filter.js';
import { CriLedgerError, NotFoundError } from '../../domain/errors.js';
import { decodeEvent } from '../../domain/events.js';
import { parseStream } from '../../domain/ids.js';
import {
  type EventFilter,
  type EventSource,
  type SourcedEvent,
  type SourcedRecord,
  type StreamStatus,
} from './event-source.js';

/** A connect attempt gives up after this. */
export const DEFAULT_NATS_CONNECT_TIMEOUT_MS = 5_000;
/** Messages requested from the server per pull. */
const PULL_BATCH = 256;
// JetStream API error code for "stream not found" (nats-server's errors.json).
const STREAM_NOT_FOUND = 10059;

/**
 * Reads the JetStream stream the relays publish to: for a machine that is not the node.
 * Only `cri-ledger.<node>.>` is read, so the node must be the publishing node's name
 * (`--node`; the default is this machine's hostname, right only on the node itself).
 *
 * Each read is an ordered consumer (ephemeral, no acks, server-side subject filter); it
 * ends once the consumer has nothing pending, unless following. NATS stream sequences
 * are not ledger seqs (many nodes share a stream), so `--from` filters client-side and
 * `--since` becomes the consumer's start time.
 */
export class NatsSource implements EventSource {
  readonly description: string;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    url: string,
    private readonly stream: string,
    private readonly node: string,
  ) {
    this.description = `nats ${url} stream ${stream} node ${node}`;
  }

  static async open(options: { url: string; stream: string; node: string }): Promise<NatsSource> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: options.url.split(',').map((s) => s.trim()),
        name: 'cri-ledger-cli',
        timeout: DEFAULT_NATS_CONNECT_TIMEOUT_MS,
      });
    } catch (cause) {
      throw new CriLedgerError(`cannot reach NATS at ${options.url}: ${(cause as Error).message}`, { cause });
    }
    try {
      const jsm = await nc.jetstreamManager();
      const info = await jsm.streams.info(options.stream);
      // A consumer filter outside the stream's subjects is refused (and the ordered
      // consumer would retry it forever), so say which nodes the stream does hold.
      const wanted = nodeSubjects(options.node);
      if (!info.config.subjects.some((pattern) => subjectCovers(pattern, wanted))) {
        throw new CriLedgerError(
          `stream ${options.stream} holds no events of node "${options.node}" (it captures ${info.config.subjects.join(', ')}); ` +
            "off the node, pass --node with the publishing node's name",
        );
      }
      return new NatsSource(nc, jsm, options.url, options.stream, options.node);
    } catch (error) {
      await nc.close();
      if (error instanceof CriLedgerError) throw error;
      if ((error as { api_error?: { err_code?: number } }).api_error?.err_code === STREAM_NOT_FOUND) {
        throw new NotFoundError('JetStream stream', options.stream);
      }
      throw error;
    }
  }

  async *readEvents(filter: EventFilter = {}): AsyncIterable<SourcedEvent> {
    yield* this.events(filter, false);
  }

  async *readRecords(): AsyncIterable<SourcedRecord> {
    for await (const m of this.messages(nodeSubjects(this.node), {}, false)) {
      const json = m.string();
      const seq = /"seq":(\d+)/.exec(json);
      yield { seq: seq ? Number(seq[1]) : 0, json, where: `stream seq ${m.seq} (${m.subject})` };
    }
  }

  follow(filter: EventFilter, signal?: AbortSignal): AsyncIterable<SourcedEvent> {
    return this.events(filter, true, signal);
  }

  private async *events(filter: EventFilter, follow: boolean, signal?: AbortSignal): AsyncIterable<SourcedEvent> {
    const f = compileFilter(filter);
    const start: Partial<OrderedConsumerOptions> = filter.since
      ? { opt_start_time: new Date(filter.since).toISOString() }
      : {};
    // A relay that restarted may re-send events the dedupe window no longer remembers:
    // each node's seqs only grow, so anything at or below the last one is a duplicate.
    let last = 0;
    for await (const m of this.messages(subjectFilter(this.node, filter), start, follow, signal)) {
      const json = m.string();
      const event = decodeEvent(json);
      if (event.seq <= last) continue;
      last = event.seq;
      if (f.ended(event)) return;
      if (f.matches(event)) yield { seq: event.seq, json, event };
    }
  }

  private async *messages(
    subject: string,
    start: Partial<OrderedConsumerOptions>,
    follow: boolean,
    signal?: AbortSignal,
  ): AsyncIterable<JsMsg> {
    const consumer = await this.nc.jetstream().consumers.get(this.stream, { filterSubjects: subject, ...start });
    const info = await consumer.info();
    if (info.num_pending === 0 && !follow) {
      await consumer.delete().catch(() => undefined);
      return;
    }
    const messages = await consumer.consume({ max_messages: PULL_BATCH });
    const stop = (): void => messages.stop();
    signal?.addEventListener('abort', stop);
    try {
      for await (const m of messages) {
        yield m;
        if (!follow && m.info.pending === 0) return;
      }
    } finally {
      signal?.removeEventListener('abort', stop);
      messages.stop();
      await consumer.delete().catch(() => undefined);
    }
  }

  async status(): Promise<StreamStatus> {
    const subjects = nodeSubjects(this.node);
    const info = await this.jsm.streams.info(this.stream, { subjects_filter: subjects });
    const state = info.state;
    const out: StreamStatus = {
      kind: 'stream',
      source: this.description,
      stream: this.stream,
      messages: state.messages,
      bytes: state.bytes,
      node: this.node,
      nodeSubjects: subjects,
      nodeMessages: await this.size(),
      nodeSubjectCount: Object.keys(state.subjects ?? {}).length,
    };
    if (state.messages > 0) {
      out.first = { seq: state.first_seq, at: state.first_ts };
      out.last = { seq: state.last_seq, at: state.last_ts };
    }
    if (out.nodeMessages > 0) {
      try {
        const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subjects });
        const event = decodeEvent(last.string());
        out.nodeHead = { seq: event.seq, at: event.at };
      } catch {
        // Older servers refuse a wildcard here; the head is a convenience, not essential.
      }
    }
    return out;
  }

  /** This node's messages in the stream (exact: an ordered consumer's pending count). */
  async size(): Promise<number> {
    const consumer = await this.nc.jetstream().consumers.get(this.stream, { filterSubjects: nodeSubjects(this.node) });
    try {
      return (await consumer.info()).num_pending;
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/**
 * The narrowest single subject filter for a read (nats-server before 2.10 takes only
 * one): one stream and/or one type narrow it; anything else reads the node's subjects
 * and filters here.
 */
export function subjectFilter(node: string, filter: EventFilter): string {
  const streams = filter.streams ?? [];
  const types = filter.types ?? [];
  const base = `${SUBJECT_PREFIX}.${subjectToken(node)}`;
  if (streams.length > 1 || types.length > 1 || (streams.length === 0 && types.length === 0)) return `${base}.>`;
  let kindAndId = '*.*';
  if (streams.length === 1) {
    const { kind, id } = parseStream(streams[0]!);
    kindAndId = `${kind}.${subjectToken(id)}`;
  }
  return `${base}.${kindAndId}.${types.length === 1 ? subjectToken(types[0]!) : '*'}`;
}
