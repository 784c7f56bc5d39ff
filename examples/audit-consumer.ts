/*
 * An audit consumer for a fleet of cri-ledger nodes: a durable JetStream pull consumer on
 * `cri-ledger.*.>` that reads every node's events once per event id, resumes after its
 * own restart where it stopped, and can narrow to a node, a kind of stream or an event
 * type. It prints each event as one JSON line (the envelope, as the node's log holds it).
 *
 *   node dist/examples/audit-consumer.js --nats nats://nats:4222 --durable audit \
 *     [--node worker-3] [--kind container] [--type ExecStarted] [--seen seen-ids.txt] [--ack-wait 30s] [--idle-exit 5s]
 *
 * The stream must take every node's subjects (`cri-ledger.>`), as the fleet's stream is
 * made (docs/nats.md): nats-server 2.9 takes a consumer filter only within one subject
 * of the stream, and relays that create it alone give it `cri-ledger.<node>.>` each.
 *
 * Once per id: JetStream redelivers what was not acked, so an event can arrive twice if
 * the consumer dies between handling it and acking it. The ids handled are appended to
 * the --seen file before the ack and loaded at start, so a redelivery is skipped.
 * (docs/nats.md quotes this file; test/int/audit-consumer.int.test.ts runs it.)
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
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
    seen: { type: 'string', default: 'audit-seen-ids.txt' },
    // What a consumer that died holding messages waits before they come again.
    'ack-wait': { type: 'string', default: '30s' },
    'idle-exit': { type: 'string' },
  },
});

/** `30s`, `2s`, `500ms` in milliseconds. */
const ms = (text: string): number => Number.parseFloat(text) * (text.endsWith('ms') ? 1 : 1000);

// Subjects are cri-ledger.<node>.<kind>.<id>.<EventType>: one filter narrows on all three.
const filter = `cri-ledger.${o.node}.${o.kind}.*.${o.type}`;
const seen = new Set(existsSync(o.seen!) ? readFileSync(o.seen!, 'utf8').split('\n').filter(Boolean) : []);

const nc = await connect({ servers: o.nats!.split(',') });
const jsm = await nc.jetstreamManager();
// Created once, then found again on every restart: the server keeps its position.
await jsm.consumers
  .info(o.stream!, o.durable!)
  .catch(() =>
    jsm.consumers.add(o.stream!, {
      durable_name: o.durable!,
      filter_subject: filter,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ms(o['ack-wait']!)),
      deliver_policy: DeliverPolicy.All,
    }),
  );
const consumer = await nc.jetstream().consumers.get(o.stream!, o.durable!);

const idleMs = o['idle-exit'] ? ms(o['idle-exit']) : 0;
let idle: NodeJS.Timeout | undefined;
const messages = await consumer.consume();
const armIdle = (): void => {
  if (!idleMs) return;
  clearTimeout(idle);
  idle = setTimeout(() => void messages.close(), idleMs);
};
armIdle();
for await (const m of messages) {
  const event = JSON.parse(m.string()) as { id: string; node: string };
  if (!seen.has(event.id)) {
    process.stdout.write(`${m.string()}\n`);
    appendFileSync(o.seen!, `${event.id}\n`);
    seen.add(event.id);
  }
  m.ack();
  armIdle();
}
await nc.drain();
