import { randomBytes } from 'node:crypto';
import {
  AckPolicy,
  connect,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  nanos,
  type OrderedConsumerOptions,
} from 'nats';
import {
  DEFAULT_PUBLISH_TIMEOUT_MS,
  DEFAULT_RECONNECT_WAIT_MS,
  DEFAULT_RETRY_BACKOFF_MAX_MS,
  duplicateWindowWarning,
  resendHorizonMs,
} from '../../adapters/bus/nats-relay-options.js';
import { streamLimits } from '../../adapters/bus/nats-stream-config.js';
import {
  nodeSubjects,
  parseSubjectToken,
  SUBJECT_PREFIX,
  subjectCovers,
  subjectToken,
} from '../../adapters/bus/nats-subject.js';
import { compileFilter } from '../../adapters/ledger-api/event-filter.js';
import { CriLedgerError, InvalidArgumentError, NotFoundError } from '../../domain/errors.js';
import { decodeEvent } from '../../domain/events.js';
import { parseStream } from '../../domain/ids.js';
import {
  type EventFilter,
  type EventSource,
  type SourcedEvent,
  type SourcedRecord,
  type StreamStatus,
} from './event-source.js';
import { orderAcrossNodes, parseNodeSpec } from './node-order.js';

/** A connect attempt gives up after this. */
export const DEFAULT_NATS_CONNECT_TIMEOUT_MS = 5_000;
/** Messages requested from the server per pull. */
const PULL_BATCH = 256;
/**
 * How long each pull lasts before the client asks again (nats.js's default is 30 s). The
 * client also counts a pull lost when two heartbeats (half this apart) do not come, and
 * then recreates the consumer: with the default, a pull that a server lost while the
 * stream's leader changed left a read waiting 30 s for nothing.
 */
export const PULL_EXPIRES_MS = 4_000;
// JetStream API error codes (nats-server's errors.json): "stream not found", and "consumer
// filter subject is not a valid subset of the interest subjects".
const STREAM_NOT_FOUND = 10059;
const FILTER_NOT_SUBSET = 10093;

/**
 * Reads the JetStream stream the relays publish to: for a machine that is not the node.
 * It reads `cri-ledger.<node>.>` of the nodes `--node` names: one (the default is this
 * machine's hostname, right only on the node itself), a comma list, or `*` for every
 * node the stream holds. Each event says which node published it.
 *
 * Each read is an ordered consumer (ephemeral, no acks, server-side subject filter); it
 * ends once the consumer has nothing pending, unless following. NATS stream sequences
 * are not ledger seqs (many nodes share a stream), so `--from` filters client-side and
 * `--since` becomes the consumer's start time. A finite read holds the selected events
 * to put them in log order (orderAcrossNodes); a follow prints them as they arrive.
 */
export class NatsSource implements EventSource {
  readonly description: string;
  readonly manyNodes: boolean;
  /** filterAccepted's answers, per subject filter. */
  private readonly accepted = new Map<string, boolean>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    url: string,
    private readonly stream: string,
    private readonly nodeText: string,
    /** The nodes read, each by its own filter; empty with `*` over a stream that takes `cri-ledger.>`. */
    private readonly nodes: string[],
    /** `*` over a stream whose subjects cover every node: one consumer reads them all. */
    private readonly anyNode: boolean,
  ) {
    this.description = `nats ${url} stream ${stream} node ${nodeText}`;
    this.manyNodes = anyNode || nodes.length > 1;
  }

  static async open(options: { url: string; stream: string; node: string }): Promise<NatsSource> {
    const spec = parseNodeSpec(options.node);
    if (spec.kind === 'list' && spec.nodes.length === 0) throw new InvalidArgumentError('--node', 'names no node');
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
      const subjects = info.config.subjects;
      if (spec.kind === 'all') {
        if (subjects.some((pattern) => subjectCovers(pattern, `${SUBJECT_PREFIX}.*.>`))) {
          return new NatsSource(nc, jsm, options.url, options.stream, options.node, [], true);
        }
        // Relays that made the stream alone give it one `cri-ledger.<node>.>` each.
        const nodes = subjects.flatMap((pattern) => {
          const m = /^cri-ledger\.([^.*>]+)\.>$/.exec(pattern);
          return m ? [parseSubjectToken(m[1]!)] : [];
        });
        return new NatsSource(nc, jsm, options.url, options.stream, options.node, nodes, false);
      }
      // A consumer filter outside the stream's subjects is refused (and the ordered
      // consumer would retry it forever), so say which nodes the stream does hold.
      for (const node of spec.nodes) {
        if (!subjects.some((pattern) => subjectCovers(pattern, nodeSubjects(node)))) {
          throw new CriLedgerError(
            `stream ${options.stream} holds no events of node "${node}" (it captures ${subjects.join(', ')}); ` +
              "off the node, pass --node with the publishing node's name (or '*' for every node)",
          );
        }
      }
      return new NatsSource(nc, jsm, options.url, options.stream, options.node, spec.nodes, false);
    } catch (error) {
      await nc.close();
      if (error instanceof CriLedgerError) throw error;
      if ((error as { api_error?: { err_code?: number } }).api_error?.err_code === STREAM_NOT_FOUND) {
        throw new NotFoundError('JetStream stream', options.stream);
      }
      throw error;
    }
  }

  /** The subject filters a read uses: one for `*` over a stream of all nodes, else one per node. */
  private filters(filter: EventFilter): string[] {
    if (this.anyNode) return [subjectFilter(ANY_NODE, filter)];
    return this.nodes.map((node) => subjectFilter(node, filter));
  }

  async *readEvents(filter: EventFilter = {}): AsyncIterable<SourcedEvent> {
    const f = compileFilter(filter);
    const start = startAt(filter);
    const read: Array<SourcedEvent & { node: string }> = [];
    for (const subject of this.filters(filter)) {
      for await (const m of this.messages(subject, start, false)) {
        const json = m.string();
        const event = decodeEvent(json);
        if (f.matches(event)) read.push({ seq: event.seq, json, event, node: nodeOf(m.subject) });
      }
    }
    yield* orderAcrossNodes(read);
  }

  async *readRecords(): AsyncIterable<SourcedRecord> {
    if (this.anyNode || this.nodes.length !== 1) {
      throw new InvalidArgumentError('--node', "this command reads one node's log: name one node");
    }
    for await (const m of this.messages(nodeSubjects(this.nodes[0]!), {}, false)) {
      const json = m.string();
      const seq = /"seq":(\d+)/.exec(json);
      yield { seq: seq ? Number(seq[1]) : 0, json, where: `stream seq ${m.seq} (${m.subject})` };
    }
  }

  async *follow(filter: EventFilter, signal?: AbortSignal): AsyncIterable<SourcedEvent> {
    const f = compileFilter(filter);
    // A relay that restarted may re-send events the dedupe window no longer remembers:
    // a node's seq names one event, so a seq seen before is a copy.
    const seen = new Map<string, Set<number>>();
    const subjects = this.filters(filter);
    const streams = subjects.map((subject) => this.messages(subject, startAt(filter), true, signal));
    for await (const m of interleave(streams)) {
      const json = m.string();
      const event = decodeEvent(json);
      const node = nodeOf(m.subject);
      let seqs = seen.get(node);
      if (!seqs) seen.set(node, (seqs = new Set()));
      if (seqs.has(event.seq)) continue;
      seqs.add(event.seq);
      if (f.matches(event)) yield { seq: event.seq, json, event, node };
    }
  }

  private async *messages(
    subject: string,
    start: Partial<OrderedConsumerOptions>,
    follow: boolean,
    signal?: AbortSignal,
  ): AsyncIterable<JsMsg> {
    const filtered = await this.filterAccepted(subject);
    const consumer = await this.nc
      .jetstream()
      .consumers.get(this.stream, { ...(filtered ? { filterSubjects: subject } : {}), ...start });
    const info = await consumer.info();
    if (info.num_pending === 0 && !follow) {
      await consumer.delete().catch(() => undefined);
      return;
    }
    const messages = await consumer.consume({ max_messages: PULL_BATCH, expires: PULL_EXPIRES_MS });
    const stop = (): void => messages.stop();
    signal?.addEventListener('abort', stop);
    try {
      for await (const m of messages) {
        if (filtered || subjectCovers(subject, m.subject)) yield m;
        if (!follow && m.info.pending === 0) return;
      }
    } finally {
      signal?.removeEventListener('abort', stop);
      messages.stop();
      await consumer.delete().catch(() => undefined);
    }
  }

  /**
   * Whether the cluster takes a consumer filtered to `subject`. nats-server 2.9 can refuse
   * a filter that the stream's subjects cover (FILTER_NOT_SUBSET) after one of its
   * servers restarted, for as long as a minute and more, though the stream's info lists
   * the subject; nats.js's ordered consumer then retries its creation 30 times, backing
   * off, and the read waits for all of them. So a throwaway consumer is made first, the
   * way the ordered consumer will be; when it is refused, the read goes unfiltered and
   * drops other subjects itself.
   */
  private async filterAccepted(subject: string): Promise<boolean> {
    const known = this.accepted.get(subject);
    if (known !== undefined) return known;
    let accepted = true;
    try {
      // Named, as the ordered consumer's are: a named consumer's creation goes the way its
      // will (CONSUMER.CREATE.<stream>.<name>.<filter>); an unnamed one's is answered
      // elsewhere in the cluster, and was accepted while the named one was refused.
      const probe = await this.jsm.consumers.add(this.stream, {
        name: `cri_ledger_cli_probe_${randomBytes(6).toString('hex')}`,
        filter_subject: subject,
        ack_policy: AckPolicy.None,
        mem_storage: true,
        num_replicas: 1,
        inactive_threshold: nanos(10_000),
      });
      await this.jsm.consumers.delete(this.stream, probe.name).catch(() => undefined);
    } catch (error) {
      if ((error as { api_error?: { err_code?: number } }).api_error?.err_code !== FILTER_NOT_SUBSET) throw error;
      accepted = false;
    }
    this.accepted.set(subject, accepted);
    return accepted;
  }

  async status(): Promise<StreamStatus> {
    const info = await this.jsm.streams.info(this.stream);
    const state = info.state;
    const limits = streamLimits(info.config);
    const horizonMs = resendHorizonMs({
      publishTimeoutMs: DEFAULT_PUBLISH_TIMEOUT_MS,
      reconnectWaitMs: DEFAULT_RECONNECT_WAIT_MS,
      retryBackoffMaxMs: DEFAULT_RETRY_BACKOFF_MAX_MS,
    });
    const out: StreamStatus = {
      kind: 'stream',
      source: this.description,
      stream: this.stream,
      messages: state.messages,
      bytes: state.bytes,
      node: this.nodeText,
      nodeSubjects: this.filters({}).join(', '),
      nodeMessages: 0,
      nodeSubjectCount: 0,
      server: this.nc.getServer(),
      limits,
      resendHorizonMs: horizonMs,
    };
    const warning = duplicateWindowWarning(this.stream, limits, horizonMs);
    if (warning !== undefined) out.warnings = [warning];
    if (info.cluster) {
      out.cluster = {
        replicas: [
          ...(info.cluster.leader ? [{ name: info.cluster.leader, current: true }] : []),
          ...(info.cluster.replicas ?? []).map((r) => ({
            name: r.name,
            current: r.current,
            ...(r.lag !== undefined ? { lag: r.lag } : {}),
            ...(r.offline ? { offline: true } : {}),
          })),
        ],
      };
      if (info.cluster.name) out.cluster.name = info.cluster.name;
      if (info.cluster.leader) out.cluster.leader = info.cluster.leader;
    }
    if (state.messages > 0) {
      out.first = { seq: state.first_seq, at: state.first_ts };
      out.last = { seq: state.last_seq, at: state.last_ts };
    }
    const nodes = this.anyNode ? await this.discoverNodes() : this.nodes;
    const parts = [];
    for (const node of nodes) {
      const part: { node: string; messages: number; head?: { seq: number; at: string } } = {
        node,
        messages: await this.pending(nodeSubjects(node)),
      };
      const head = part.messages > 0 ? await this.headOf(node) : undefined;
      if (head) part.head = head;
      parts.push(part);
    }
    out.nodeMessages = parts.reduce((n, p) => n + p.messages, 0);
    if (nodes.length === 1 && !this.anyNode) {
      const subjects = nodeSubjects(nodes[0]!);
      const detail = await this.jsm.streams.info(this.stream, { subjects_filter: subjects });
      out.nodeSubjectCount = Object.keys(detail.state.subjects ?? {}).length;
      if (parts[0]?.head) out.nodeHead = parts[0].head;
    } else {
      out.nodes = parts;
    }
    return out;
  }

  /** Every node token among the stream's subjects (a stream that takes `cri-ledger.>`). */
  private async discoverNodes(): Promise<string[]> {
    const detail = await this.jsm.streams.info(this.stream, { subjects_filter: `${SUBJECT_PREFIX}.*.>` });
    const nodes = new Set(Object.keys(detail.state.subjects ?? {}).map((subject) => nodeOf(subject)));
    return [...nodes].sort();
  }

  private async headOf(node: string): Promise<{ seq: number; at: string } | undefined> {
    try {
      const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: nodeSubjects(node) });
      const event = decodeEvent(last.string());
      return { seq: event.seq, at: event.at };
    } catch {
      // Older servers refuse a wildcard here; the head is a convenience, not essential.
      return undefined;
    }
  }

  /** Messages of the nodes read (exact: ordered consumers' pending counts). */
  async size(): Promise<number> {
    let total = 0;
    for (const subject of this.filters({})) total += await this.pending(subject);
    return total;
  }

  private async pending(subject: string): Promise<number> {
    const consumer = await this.nc.jetstream().consumers.get(this.stream, { filterSubjects: subject });
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

/** The node token of a relay subject `cri-ledger.<node>.<kind>.<id>.<type>`, unescaped. */
function nodeOf(subject: string): string {
  return parseSubjectToken(subject.split('.')[1] ?? '');
}

function startAt(filter: EventFilter): Partial<OrderedConsumerOptions> {
  return filter.since ? { opt_start_time: new Date(filter.since).toISOString() } : {};
}

/** Yields from every iterable as items arrive, until all have ended. */
async function* interleave<T>(sources: Array<AsyncIterable<T>>): AsyncIterable<T> {
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T> }>>();
  const pull = (i: number): void => {
    pending.set(
      i,
      iterators[i]!.next().then((r) => ({ i, r })),
    );
  };
  iterators.forEach((_, i) => pull(i));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
        continue;
      }
      pull(i);
      yield r.value;
    }
  } finally {
    // A source may be waiting for its next message; its return() runs once that comes
    // (or the read's signal stops it), so it is not awaited here.
    for (const it of iterators) void it.return?.()?.catch(() => undefined);
  }
}

/** subjectFilter's node for "every node": a `*` token (a node named `*` is escaped, so none is). */
export const ANY_NODE = '*';

/**
 * The narrowest single subject filter for a read (nats-server before 2.10 takes only
 * one): one stream and/or one type narrow it; anything else reads the node's subjects
 * and filters here.
 */
export function subjectFilter(node: string, filter: EventFilter): string {
  const streams = filter.streams ?? [];
  const types = filter.types ?? [];
  const base = `${SUBJECT_PREFIX}.${node === ANY_NODE ? '*' : subjectToken(node)}`;
  if (streams.length > 1 || types.length > 1 || (streams.length === 0 && types.length === 0)) return `${base}.>`;
  let kindAndId = '*.*';
  if (streams.length === 1) {
    const { kind, id } = parseStream(streams[0]!);
    kindAndId = `${kind}.${subjectToken(id)}`;
  }
  return `${base}.${kindAndId}.${types.length === 1 ? subjectToken(types[0]!) : '*'}`;
}
