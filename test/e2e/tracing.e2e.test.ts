import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Client, credentials, Metadata, makeGenericClientConstructor } from '@grpc/grpc-js';
import { runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { decodeEvent } from '../../src/domain/events.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';
import { until } from '../support/until.js';

/*
 * Traces over OTLP/HTTP to a receiver this test runs: a CRI call carrying a W3C
 * traceparent becomes a server span under the caller's span, each event it records a
 * child span with the event's seq, and the event and the span lead to each other (the
 * trace id in the event's envelope, the correlation id on the span).
 */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Array<{ key: string; value: { stringValue?: string; intValue?: string | number } }>;
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

describe('OTLP traces of CRI calls', () => {
  let h: CriHarness;
  let receiver: Server;
  const spans: OtlpSpan[] = [];
  const attribute = (span: OtlpSpan, key: string): string | undefined => {
    const value = span.attributes.find((a) => a.key === key)?.value;
    return value?.stringValue ?? (value?.intValue === undefined ? undefined : String(value.intValue));
  };

  before(async () => {
    receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
        };
        for (const r of body.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const port = (receiver.address() as { port: number }).port;
    h = await startCriHarness({
      prefix: 'cri-ledger-e2e-tracing-',
      env: { CRI_LEDGER_TRACING_OTLP_ENDPOINT: `http://127.0.0.1:${port}/v1/traces` },
    });
  });
  after(async () => {
    if (h) await removeAllPods(h).catch(() => undefined);
    await h?.cleanup();
    receiver?.close();
  });

  it("makes a CreateContainer a child of the caller's span, with a span per recorded event", async () => {
    const pod = {
      metadata: { name: 'traced', uid: 'uid-traced', namespace: 'default', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    };
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod });
    const metadata = new Metadata();
    metadata.set('traceparent', `00-${TRACE_ID}-${PARENT_SPAN}-01`);
    const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
    const traced = new Constructor(`unix://${h.socket}`, credentials.createInsecure()) as unknown as Client & {
      createContainer(r: object, m: Metadata, cb: (e: Error | null, r: { containerId: string }) => void): void;
    };
    const request = {
      podSandboxId,
      sandboxConfig: pod,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
    };
    const { containerId } = await new Promise<{ containerId: string }>((resolve, reject) =>
      traced.createContainer(request, metadata, (e, r) => (e ? reject(e) : resolve(r))),
    );
    traced.close();
    await until(
      'the call span',
      async () => spans.some((s) => s.name === 'runtime.v1.RuntimeService/CreateContainer'),
      20_000,
    );
    const call = spans.find((s) => s.name === 'runtime.v1.RuntimeService/CreateContainer')!;
    assert.equal(call.traceId, TRACE_ID, "the caller's trace");
    assert.equal(call.parentSpanId, PARENT_SPAN, "under the caller's span");

    // The events: the trace id in each envelope, the span's correlation id in each.
    const client = LedgerClient.connect(h.socket);
    const events: LedgerEvent[] = [];
    try {
      for await (const record of client.readEvents({ streams: [`container-${containerId}`] }))
        events.push(decodeEvent(record.json));
    } finally {
      client.close();
    }
    assert.ok(events.length >= 4, events.map((e) => e.type).join(','));
    for (const e of events) assert.equal(e.traceId, TRACE_ID, `${e.type} carries the trace id`);
    assert.equal(attribute(call, 'cri_ledger.correlation_id'), events[0]!.correlationId);

    await until(
      'a span per event',
      async () => spans.filter((s) => s.parentSpanId === call.spanId).length >= events.length,
    );
    const children = spans.filter((s) => s.parentSpanId === call.spanId);
    assert.deepEqual(
      events.map((e) => [e.type, String(e.seq)]),
      events.map((e) => {
        const span = children.find((s) => s.name === e.type && attribute(s, 'cri_ledger.seq') === String(e.seq));
        return [span?.name, attribute(span!, 'cri_ledger.seq')];
      }),
    );
  });

  it('traces a call without a traceparent as a new trace, and its events say which', async () => {
    await h.call('version', {});
    await until('the Version span', async () => spans.some((s) => s.name === 'runtime.v1.RuntimeService/Version'));
    const version = spans.find((s) => s.name === 'runtime.v1.RuntimeService/Version')!;
    assert.notEqual(version.traceId, TRACE_ID);
    assert.equal(version.parentSpanId ?? '', '');
  });
});
