/*
 * An audit consumer for a fleet of cri-ledger nodes: a durable JetStream pull consumer on
 * `cri-ledger.*.>` that reads every node's events once per event id, resumes after its
 * own restart where it stopped, and can narrow to a node, a kind of stream or an event
 * type. It appends each event as one JSON line (the envelope, as the node's log holds it)
 * to the --out file, and echoes the line on stdout.
 *
 *   node dist/examples/audit-consumer.js --nats nats://nats:4222 --durable audit \
 *     [--node worker-3] [--kind container] [--type ExecStarted] [--out audit-events.ndjson] [--ack-wait 30s] [--idle-exit 5s]
 *
 * The stream must take every node's subjects (`cri-ledger.>`), as the fleet's stream is
 * made (docs/nats.md): nats-server 2.9 takes a consumer filter only within one subject
 * of the stream, and relays that create it alone give it `cri-ledger.<node>.>` each.
 *
 * Once per id: JetStream redelivers what was not acked, so an event can arrive twice if
 * the consumer dies between handling it and acking it. The --out file is both the output
 * and the record of what was handled: each event is one append (one write), made before
 * the ack, and the ids in the file are loaded at start, so a redelivery is skipped. A
 * line cut short by a crash is cut off at start (its event comes again). Handling and
 * recording are one write, so the file holds every event exactly once; stdout is a
 * copy for a person watching, and may repeat a line across a crash.
 * (docs/nats.md quotes this file; test/int/audit-consumer.int.test.ts runs it.)
 */
import { appendFileSync, existsSync, readFileSync, truncateSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AckPolicy, connect, DeliverPolicy, nanos } from 'nats';

const { values: o } = parseArgs({
  options: {
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
    stream: { type: 'string', default: 'CRI_LEDGER' },
    durable: { type: 'string', default: 'audit' },
    node: { type: 'string', default: '*' },
    kind: { type: 'string', default: '*' },
    type: { type: 'string', default: '*' },
    out: { type: 'string', default: 'audit-events.ndjson' },
    // What a consumer that died holding messages waits before they come again.
    'ack-wait': { type: 'string', default: '30s' },
    'idle-exit': { type: 'string' },
  },
});

/** `30s`, `2s`, `500ms` in milliseconds. */
const ms = (text: string): number => Number.parseFloat(text) * (text.endsWith('ms') ? 1 : 1000);

// Subjects are cri-ledger.<node>.<kind>.<id>.<EventType>: one filter narrows on all three.
const filter = `cri-ledger.${o.node}.${o.kind}.*.${o.type}`;
const seen = new Set<string>();
if (existsSync(o.out!)) {
  const text = readFileSync(o.out!, 'utf8');
  const whole = text.lastIndexOf('\n') + 1;
  if (whole < text.length) truncateSync(o.out!, Buffer.byteLength(text.slice(0, whole)));
  for (const line of text.slice(0, whole).split('\n').filter(Boolean))
    seen.add((JSON.parse(line) as { id: string }).id);
}

/**
 * JetStream's API does not answer while a cluster elects a stream or consumer leader (a
 * server died): TIMEOUT, or 503 when nothing responds. Such a call is tried again, every
 * 2 s for up to a minute; any other error ends the consumer.
 */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= 30 || (code !== 'TIMEOUT' && code !== '503')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
  }
}

const nc = await connect({ servers: o.nats!.split(',') });
const jsm = await nc.jetstreamManager();
// Created once, then found again on every restart: the server keeps its position.
await retrying(() =>
  jsm.consumers.info(o.stream!, o.durable!).catch((error: unknown) => {
    if (['TIMEOUT', '503'].includes((error as { code?: string }).code ?? '')) throw error; // tried again
    return jsm.consumers.add(o.stream!, {
      durable_name: o.durable!,
      filter_subject: filter,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ms(o['ack-wait']!)),
      deliver_policy: DeliverPolicy.All,
    });
  }),
);
const consumer = await retrying(() => nc.jetstream().consumers.get(o.stream!, o.durable!));

const idleMs = o['idle-exit'] ? ms(o['idle-exit']) : 0;
let idle: NodeJS.Timeout | undefined;
// Once consuming, the client rides out elections itself (it asks again until the consumer answers).
const messages = await retrying(() => consumer.consume());
const armIdle = (): void => {
  if (!idleMs) return;
  clearTimeout(idle);
  idle = setTimeout(() => void messages.close(), idleMs);
};
armIdle();
for await (const m of messages) {
  const event = JSON.parse(m.string()) as { id: string; node: string };
  if (!seen.has(event.id)) {
    appendFileSync(o.out!, `${m.string()}\n`);
    seen.add(event.id);
    process.stdout.write(`${m.string()}\n`);
  }
  m.ack();
  armIdle();
}
await nc.drain();
