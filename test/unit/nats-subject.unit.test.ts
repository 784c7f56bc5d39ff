import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nanos, RetentionPolicy, StorageType, type StreamConfig } from 'nats';
import {
  compareStreamConfig,
  formatDurationMs,
  StreamConfigMismatchError,
} from '../../src/adapters/bus/nats-stream-config.js';
import {
  nodeSubjects,
  parseSubject,
  parseSubjectToken,
  subjectCovers,
  subjectFor,
  subjectToken,
} from '../../src/adapters/bus/nats-subject.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import { hexId } from '../support/fixtures.js';

describe('subject tokens', () => {
  it('escapes the characters NATS gives meaning to, and % itself', () => {
    assert.equal(subjectToken('docker.io/library/busybox:latest'), 'docker%2Eio/library/busybox:latest');
    assert.equal(subjectToken('a*b>c'), 'a%2Ab%3Ec');
    assert.equal(subjectToken('100%'), '100%25');
    assert.equal(subjectToken('two words\tand\nlines'), 'two%20words%09and%0Alines');
    assert.equal(subjectToken('nul\u0000'), 'nul%00');
    assert.equal(subjectToken('nbsp\u00a0'), 'nbsp%C2%A0');
  });

  it('leaves ordinary ids, node names and types alone', () => {
    assert.equal(subjectToken(hexId('c1')), hexId('c1'));
    assert.equal(subjectToken('node-1_a:b/c'), 'node-1_a:b/c');
    assert.equal(subjectToken('NameReserved'), 'NameReserved');
  });

  it('round-trips every escaped token, including ones that look escaped already', () => {
    const samples = [
      'docker.io/library/busybox:latest',
      '%2E',
      '%',
      '*',
      '>',
      ' lead',
      'ünï.cødé ✓',
      'a..b',
      'x\r\ny\u2028z',
    ];
    for (const s of samples) {
      const token = subjectToken(s);
      assert.doesNotMatch(token, /[.*>\s]/, `token for ${JSON.stringify(s)}`);
      assert.equal(parseSubjectToken(token), s);
    }
  });

  it('refuses an empty token, which would make an empty subject level', () => {
    assert.throws(() => subjectToken(''), InvalidArgumentError);
  });

  it('refuses to unescape a malformed token', () => {
    assert.throws(() => parseSubjectToken('%zz'), InvalidArgumentError);
  });
});

describe('subjectFor', () => {
  const event = { node: 'node-a.example.com', stream: `container-${hexId('c1')}`, type: 'NameReserved' as const };

  it('builds cri-ledger.<node>.<kind>.<id>.<type> with five tokens', () => {
    const subject = subjectFor(event);
    assert.equal(subject, `cri-ledger.node-a%2Eexample%2Ecom.container.${hexId('c1')}.NameReserved`);
    assert.equal(subject.split('.').length, 5);
  });

  it('uses the given node instead of the event one when told to', () => {
    assert.match(subjectFor(event, 'relay-node'), /^cri-ledger\.relay-node\.container\./);
  });

  it('escapes image names so the subject still has five tokens', () => {
    const subject = subjectFor({ node: 'n', stream: 'image-docker.io/library/busybox:latest', type: 'NameReserved' });
    assert.deepEqual(parseSubject(subject), {
      node: 'n',
      kind: 'image',
      id: 'docker.io/library/busybox:latest',
      type: 'NameReserved',
    });
  });

  it('parses back what it built', () => {
    assert.deepEqual(parseSubject(subjectFor(event)), {
      node: event.node,
      kind: 'container',
      id: hexId('c1'),
      type: 'NameReserved',
    });
    assert.throws(() => parseSubject('other.a.b.c.d'), InvalidArgumentError);
  });

  it('covers every event subject by its node subject', () => {
    assert.ok(subjectCovers(nodeSubjects(event.node), subjectFor(event)));
    assert.ok(!subjectCovers(nodeSubjects('other'), subjectFor(event)));
  });
});

describe('subjectCovers', () => {
  it('follows NATS wildcard rules for one filter inside another', () => {
    assert.ok(subjectCovers('cri-ledger.a.>', 'cri-ledger.a.>'));
    assert.ok(subjectCovers('cri-ledger.>', 'cri-ledger.a.>'));
    assert.ok(subjectCovers('cri-ledger.*.>', 'cri-ledger.a.>'));
    assert.ok(subjectCovers('>', 'cri-ledger.a.>'));
    assert.ok(!subjectCovers('cri-ledger.a.*', 'cri-ledger.a.>'));
    assert.ok(!subjectCovers('cri-ledger.a.>', 'cri-ledger.>'));
    assert.ok(!subjectCovers('cri-ledger.b.>', 'cri-ledger.a.>'));
    assert.ok(!subjectCovers('cri-ledger.a', 'cri-ledger.a.>'));
  });
});

describe('stream settings', () => {
  const config = (over: Partial<StreamConfig>): StreamConfig =>
    ({
      name: 'CRI_LEDGER',
      subjects: ['cri-ledger.a.>'],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: 1,
      duplicate_window: nanos(600_000),
      max_age: 0,
      ...over,
    }) as StreamConfig;
  const wanted = { name: 'CRI_LEDGER', node: 'a', replicas: 1, duplicateWindowMs: 600_000, maxAgeMs: 0, maxBytes: 0 };

  it('finds nothing to complain about in a matching stream', () => {
    assert.deepEqual(compareStreamConfig(config({}), wanted), []);
  });

  it('names each differing key with both values', () => {
    const found = compareStreamConfig(
      config({ duplicate_window: nanos(120_000), retention: RetentionPolicy.Workqueue, max_age: nanos(3_600_000) }),
      wanted,
    );
    const message = new StreamConfigMismatchError('CRI_LEDGER', found).message;
    assert.equal(
      message,
      'stream CRI_LEDGER: retention is workqueue, config wants limits; duplicate_window is 2m, config wants 10m; ' +
        'max_age is 1h, config wants 0 (unlimited)',
    );
  });

  it("reads JetStream's -1 max_bytes as the config's 0 (unlimited), and names a byte limit that differs", () => {
    assert.deepEqual(compareStreamConfig(config({ max_bytes: -1 }), wanted), []);
    assert.deepEqual(compareStreamConfig(config({ max_bytes: 1_000_000 }), wanted), [
      { key: 'max_bytes', actual: '1000000', wanted: '0 (unlimited)' },
    ]);
    assert.deepEqual(compareStreamConfig(config({ max_bytes: 1_000_000 }), { ...wanted, maxBytes: 1_000_000 }), []);
  });

  it('formats durations the way the nats CLI shows them', () => {
    assert.equal(formatDurationMs(600_000), '10m');
    assert.equal(formatDurationMs(5_400_000), '1h30m');
    assert.equal(formatDurationMs(1_500), '1s500ms');
    assert.equal(formatDurationMs(0), '0');
  });
});
