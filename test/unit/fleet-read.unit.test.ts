import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_PUBLISH_TIMEOUT_MS,
  DEFAULT_RECONNECT_WAIT_MS,
  DEFAULT_RETRY_BACKOFF_MAX_MS,
  duplicateWindowWarning,
  resendHorizonMs,
} from '../../src/adapters/bus/nats-relay-options.js';
import { orderAcrossNodes, parseNodeSpec } from '../../src/cli/sources/node-order.js';
import type { SourcedEvent } from '../../src/cli/sources/event-source.js';
import type { LedgerEvent } from '../../src/domain/events.js';

const defaults = {
  publishTimeoutMs: DEFAULT_PUBLISH_TIMEOUT_MS,
  reconnectWaitMs: DEFAULT_RECONNECT_WAIT_MS,
  retryBackoffMaxMs: DEFAULT_RETRY_BACKOFF_MAX_MS,
};

describe("the relay's worst-case re-send", () => {
  it('adds a publish timeout and a pause per failed round until the pause reaches its ceiling', () => {
    // 5 rounds: pauses 2, 4, 8, 16, 30 s, each after a 5 s publish timeout.
    assert.equal(resendHorizonMs(defaults), 5 * 5_000 + 2_000 + 4_000 + 8_000 + 16_000 + 30_000);
    assert.equal(resendHorizonMs({ publishTimeoutMs: 1_000, reconnectWaitMs: 1_000, retryBackoffMaxMs: 1_000 }), 2_000);
  });

  it('warns only when the duplicate window is shorter than the horizon', () => {
    const limits = { replicas: 3, maxAgeMs: 0, maxBytes: 0, duplicateWindowMs: 600_000 };
    assert.equal(duplicateWindowWarning('CRI_LEDGER', limits, resendHorizonMs(defaults)), undefined);
    const warning = duplicateWindowWarning('CRI_LEDGER', { ...limits, duplicateWindowMs: 60_000 }, 85_000);
    assert.match(warning ?? '', /stream CRI_LEDGER remembers message ids for 1m, less than .* 1m25s/);
  });
});

describe('--node for reads from NATS', () => {
  it('takes one node, a comma list or *', () => {
    assert.deepEqual(parseNodeSpec('*'), { kind: 'all' });
    assert.deepEqual(parseNodeSpec('a'), { kind: 'list', nodes: ['a'] });
    assert.deepEqual(parseNodeSpec(' a, b,,a '), { kind: 'list', nodes: ['a', 'b'] });
  });
});

describe('events read from a stream of many nodes', () => {
  const ev = (node: string, seq: number, at: string): SourcedEvent & { node: string } => ({
    node,
    seq,
    json: '',
    event: { seq, at, node } as unknown as LedgerEvent,
  });

  it("puts each node's events in seq order once, and nodes together by time", () => {
    const got = orderAcrossNodes([
      ev('a', 1, '2026-01-01T00:00:00.000Z'),
      ev('a', 3, '2026-01-01T00:00:03.000Z'),
      ev('b', 1, '2026-01-01T00:00:01.000Z'),
      // Re-sent after a failed publish: in the stream after a later event of its node.
      ev('a', 2, '2026-01-01T00:00:02.000Z'),
      // A copy the dedupe window did not drop.
      ev('a', 3, '2026-01-01T00:00:03.000Z'),
      ev('b', 2, '2026-01-01T00:00:02.000Z'),
    ]);
    assert.deepEqual(
      got.map((e) => `${e.node}${e.seq}`),
      ['a1', 'b1', 'a2', 'b2', 'a3'],
    );
  });
});
