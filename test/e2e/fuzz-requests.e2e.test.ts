import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { fuzzCase, type FuzzCase } from '../support/cri-fuzz.js';
import { removeAllPods } from '../support/pods.js';

/*
 * 10,000 random and malformed CRI requests (test/support/cri-fuzz.ts) over the real
 * socket to a real `cri-ledger serve` on a private containerd, 16 in flight, as raw
 * protobuf bytes (a passthrough serializer, so strings can be invalid UTF-8). Then:
 * the service is up (Version answers); its RSS grew by less than MAX_RSS_GROWTH_MB;
 * no event carries the correlation id of a request that was refused. PullImage cannot
 * leave loopback: every registry resolves to a listener here that drops each connection
 * (`_default/hosts.toml`), and a reference that parses is also moved under it.
 *
 * FUZZ_SEED and FUZZ_CASES (environment) replay or resize a run; FUZZ_REPORT=FILE writes
 * the full report (codes per method, what the refusals said, event types) as JSON.
 */

const CASES = Number(process.env['FUZZ_CASES'] ?? 10_000);
const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31);
const IN_FLIGHT = Number(process.env['FUZZ_IN_FLIGHT'] ?? 16);
const CHUNK = 500;
/** Growth is measured from the end of the warm-up (code loaded, heap at its working size), not from the idle start. */
const WARM_UP_CASES = 1_000;
const CALL_DEADLINE_MS = 30_000;
const MAX_RSS_GROWTH_MB = 50;
/**
 * The serve process's V8 old-space limit during the run. Uncapped, V8 collects lazily
 * and RSS climbs to about 220 MB over 10,000-20,000 cases (docs/reliability.md); capped,
 * it stays flat, and a leak would end the process.
 */
const SERVE_OLD_SPACE_MB = Number(process.env['FUZZ_SERVE_OLD_SPACE_MB'] ?? 128);

function rssMb(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return Math.round(kb / 102.4) / 10;
}

/** RSS once the service is idle: the lowest of a few samples over `ms` (a GC may run in between). */
async function settledRssMb(pid: number, ms = 3_000): Promise<number> {
  let low = Infinity;
  for (let t = 0; t < ms; t += 250) {
    low = Math.min(low, rssMb(pid));
    await new Promise((r) => setTimeout(r, 250));
  }
  return low;
}

describe('10,000 fuzzed CRI requests', () => {
  let h: CriHarness;
  let registry: Server;
  let registryDials = 0;
  let raw: Client;

  before(async () => {
    // A leak would grow the heap without bound; lazy collection only grows RSS. Capping the
    // old space makes the difference show: a leak ends the process (and the test) with an
    // out-of-memory error, garbage is collected sooner.
    const nodeOptions = process.env['NODE_OPTIONS'];
    process.env['NODE_OPTIONS'] = `${nodeOptions ?? ''} --max-old-space-size=${SERVE_OLD_SPACE_MB}`.trim();
    try {
      h = await startCriHarness({ prefix: 'cri-ledger-e2e-fuzz-' });
    } finally {
      if (nodeOptions === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = nodeOptions;
    }
    registry = createServer((socket) => {
      registryDials++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    await mkdir(join(h.registryConfigDir, '_default'));
    await writeFile(
      join(h.registryConfigDir, '_default', 'hosts.toml'),
      `server = "http://127.0.0.1:${(registry.address() as AddressInfo).port}"\n`,
    );
    raw = new Client(`unix://${h.socket}`, credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
      'grpc.max_receive_message_length': -1,
    });
  });
  after(async () => {
    raw?.close();
    registry?.close();
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  const send = (c: FuzzCase, correlationId: string): Promise<{ code: Status; details: string }> =>
    new Promise((resolve) => {
      const metadata = new Metadata();
      metadata.set('x-correlation-id', correlationId);
      raw.makeUnaryRequest(
        c.path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        c.bytes,
        metadata,
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (error: ServiceError | null) =>
          resolve(error ? { code: error.code, details: error.details } : { code: Status.OK, details: '' }),
      );
    });

  it('keeps the service up, its memory flat, and writes no event for a refused request', async () => {
    const podConfig = {
      metadata: { name: 'fuzz', uid: 'uid-fuzz', namespace: 'default', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    };
    const podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: podConfig })).podSandboxId;
    const pid = h.serve().child.pid!;
    const ledger = LedgerClient.connect(h.socket);
    const headBefore = (await ledger.status()).head;
    const rssStart = await settledRssMb(pid, 1_000);
    const arbitrary = fuzzCase({
      knownIds: [podId],
      loopbackRegistry: `127.0.0.1:${(registry.address() as AddressInfo).port}`,
    });

    const accepted = new Set<string>();
    const pullsStarted = new Set<string>();
    const codes = new Map<string, number>();
    const transportFailures: string[] = [];
    const byMethod = new Map<string, { sent: number; accepted: number; codes: Record<string, number> }>();
    const details = new Map<string, number>();
    let rssWarm = 0;
    const rssByChunk: number[] = [];
    let slowest = { ms: 0, method: '' };
    const slow: Array<Record<string, unknown>> = [];
    const started = Date.now();
    for (let offset = 0; offset < CASES; offset += CHUNK) {
      const cases = fc.sample(arbitrary, { numRuns: Math.min(CHUNK, CASES - offset), seed: SEED + offset });
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < cases.length; i = next++) {
          const c = cases[i]!;
          const id = `fuzz-${offset + i}`;
          const t0 = Date.now();
          const result = await send(c, id);
          const ms = Date.now() - t0;
          if (ms > slowest.ms) slowest = { ms, method: c.method };
          if (ms > Number(process.env['FUZZ_SLOW_MS'] ?? 2_000))
            slow.push({
              id,
              ms,
              method: c.method,
              damage: c.damage,
              bytes: c.bytes.length,
              code: Status[result.code] ?? '',
              head: c.bytes.subarray(0, 48).toString('hex'),
            });
          const name = Status[result.code] ?? String(result.code);
          codes.set(name, (codes.get(name) ?? 0) + 1);
          const m = byMethod.get(c.method) ?? { sent: 0, accepted: 0, codes: {} };
          m.sent++;
          m.codes[name] = (m.codes[name] ?? 0) + 1;
          if (result.code !== Status.OK) {
            // What the refusals say, with ids and quoted values cut, to see which checks fired.
            const key = `${name} ${c.method}: ${result.details
              .replace(/"[^"]*"|\[[^\]]*\]|[0-9a-f]{12,}/g, '…')
              .replace(/[^\x20-\x7e]|["\\]/g, '')
              .slice(0, 70)}`;
            details.set(key, (details.get(key) ?? 0) + 1);
          }
          if (result.code === Status.OK) {
            accepted.add(id);
            m.accepted++;
          }
          byMethod.set(c.method, m);
          if (c.pullStarts) pullsStarted.add(id);
          // The transport gave up on the service: it closed the connection or stopped answering.
          if (result.code === Status.UNAVAILABLE && c.method !== 'PullImage')
            transportFailures.push(`${id} ${c.method} (${c.damage}): ${result.details}`);
          if (result.code === Status.DEADLINE_EXCEEDED)
            transportFailures.push(`${id} ${c.method} (${c.damage}): no answer in ${CALL_DEADLINE_MS} ms`);
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      if (offset + CHUNK === WARM_UP_CASES) rssWarm = await settledRssMb(pid);
      rssByChunk.push(rssMb(pid));
    }
    const elapsedMs = Date.now() - started;
    const rssEnd = await settledRssMb(pid);

    // The process is up and serving.
    assert.equal(h.serve().child.exitCode, null, 'serve is still running');
    const version = await h.call<{ runtimeName: string }>('version', {});
    assert.equal(version.runtimeName, 'cri-ledger');

    // Every event since the start belongs to a request that was accepted (or a pull that started).
    const headAfter = (await ledger.status()).head;
    ledger.close();
    const listed = await runCli(['events', '--json', '--from', String(headBefore + 1), '--socket', h.socket], {
      timeoutMs: 60_000,
    });
    assert.equal(listed.code, 0, listed.stderr);
    const events = listed.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { seq: number; type: string; correlationId: string });
    assert.equal(events.length, headAfter - headBefore, 'cri-ledger events lists every event since the fuzz began');
    const ofRefused = events.filter((e) => !accepted.has(e.correlationId) && !pullsStarted.has(e.correlationId));
    const types = new Map<string, number>();
    for (const e of events) types.set(e.type, (types.get(e.type) ?? 0) + 1);

    const report = {
      seed: SEED,
      cases: CASES,
      elapsedMs,
      slowestCall: slowest,
      slowCalls: slow.slice(0, 30),
      codes: Object.fromEntries([...codes].sort((a, b) => b[1] - a[1])),
      byMethod: Object.fromEntries(byMethod),
      refusals: Object.fromEntries([...details].sort((a, b) => b[1] - a[1]).slice(0, 150)),
      accepted: accepted.size,
      acceptedWithEvents: new Set(events.filter((e) => accepted.has(e.correlationId)).map((e) => e.correlationId)).size,
      pullsStarted: pullsStarted.size,
      registryDials,
      crashes: transportFailures.length,
      serveOldSpaceMb: SERVE_OLD_SPACE_MB,
      rssMb: {
        byChunk: rssByChunk,
        start: rssStart,
        afterWarmUp: rssWarm,
        end: rssEnd,
        growthAfterWarmUp: Math.round((rssEnd - rssWarm) * 10) / 10,
      },
      eventsWritten: events.length,
      eventTypes: Object.fromEntries(types),
      eventsOfRefusedRequests: ofRefused.length,
      refusedWithEvents: [...new Set(ofRefused.map((e) => e.correlationId))].slice(0, 10),
      eventsOfRefused: ofRefused.slice(0, 10),
    };
    console.log(
      `fuzz: ${CASES} cases (seed ${SEED}) in ${elapsedMs} ms, ${transportFailures.length} crashes, ${accepted.size} accepted (${report.acceptedWithEvents} wrote events), ${events.length} events, ${ofRefused.length} of refused requests, RSS ${rssStart} -> ${rssWarm} -> ${rssEnd} MB`,
    );
    if (process.env['FUZZ_REPORT']) writeFileSync(process.env['FUZZ_REPORT'], `${JSON.stringify(report, null, 2)}\n`);

    assert.deepEqual(transportFailures, [], 'every call was answered with a status');
    assert.deepEqual(ofRefused.slice(0, 5), [], `no event for a refused request (${ofRefused.length} found)`);
    assert.ok(
      rssEnd - rssWarm < MAX_RSS_GROWTH_MB,
      `RSS grew ${rssEnd - rssWarm} MB after the warm-up (${rssWarm} -> ${rssEnd})`,
    );
    assert.equal(codes.get('UNKNOWN') ?? 0, 0, 'no handler failed with an unexpected error');
    // Accepted and harmless (RemoveContainer and StopContainer of an unknown id succeed, as kubelet expects) is fine;
    // requests that changed something must stay rare, or the fuzzer is not testing refusals.
    assert.ok(
      report.acceptedWithEvents < CASES / 50,
      `nearly all requests change nothing (${report.acceptedWithEvents} wrote events)`,
    );
  });
});
