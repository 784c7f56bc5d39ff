import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pullTarget } from '../../src/adapters/containerd/image-ref.js';
import { imageServiceV1, runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { confinedReference, fuzzCase } from '../support/cri-fuzz.js';
import { lengthDelimited, nestedGroups, splitFields, varint, varintField } from '../support/protobuf-wire.js';

/*
 * The fuzzer's own guards, checked with the service's decoders: a fuzzed PullImage never
 * names a registry other than the loopback one, and a fuzzed RunPodSandbox never asks
 * for a pod network. If either failed, the e2e fuzz run could dial the internet or
 * write events for a failure the test did not mean to cause.
 */

const LOOPBACK = '127.0.0.1:9';
const cases = fc.sample(fuzzCase({ knownIds: ['a'.repeat(64)], loopbackRegistry: LOOPBACK }), {
  numRuns: 3_000,
  seed: 42,
});

const registryOf = (ref: string): string | undefined => {
  try {
    return pullTarget(ref.trim()).registry;
  } catch {
    return undefined;
  }
};

describe('the fuzzer and its wire format', () => {
  it('encodes varints as protobuf does, negative int64s in ten bytes', () => {
    assert.equal(varint(300).toString('hex'), 'ac02');
    assert.equal(varint(-1n).toString('hex'), 'ffffffffffffffffff01');
    assert.equal(varintField(1, 150).toString('hex'), '089601');
  });

  it('splits a message into its fields, skipping groups whole', () => {
    const message = Buffer.concat([varintField(1, 5), nestedGroups(7, 3), lengthDelimited(2, Buffer.from('ab'))]);
    assert.deepEqual(
      splitFields(message)?.map((f) => f.number),
      [1, 7, 2],
    );
    assert.equal(splitFields(Buffer.from([0x0a, 0x05, 0x61])), undefined, 'a length past the end');
  });

  it('moves a reference that parses under the loopback registry, and leaves one that does not', () => {
    assert.deepEqual(confinedReference(Buffer.from('docker.io/library/busybox:1'), LOOPBACK), {
      bytes: Buffer.from(`${LOOPBACK}/library/busybox:1`),
      valid: true,
    });
    assert.deepEqual(confinedReference(Buffer.from(' busybox'), LOOPBACK), {
      bytes: Buffer.from(`${LOOPBACK}/busybox`),
      valid: true,
    });
    assert.equal(confinedReference(Buffer.from('not a ref'), LOOPBACK).valid, false);
  });

  it('never sends a PullImage the service would read as naming another registry', () => {
    let decoded = 0;
    for (const c of cases.filter((x) => x.method === 'PullImage')) {
      let request: { image?: { image?: string; userSpecifiedImage?: string; imageRef?: string } | null };
      try {
        request = imageServiceV1.PullImage.requestDeserialize(c.bytes) as typeof request;
      } catch {
        continue;
      }
      decoded++;
      for (const ref of [request.image?.image, request.image?.userSpecifiedImage, request.image?.imageRef]) {
        const registry = registryOf(ref ?? '');
        assert.ok(
          registry === undefined || registry === LOOPBACK,
          `a fuzzed pull names ${registry} (${JSON.stringify(ref)})`,
        );
      }
    }
    assert.ok(decoded > 100, `enough PullImage requests decode to make this check mean something (${decoded})`);
  });

  it('never sends a RunPodSandbox the service would read as asking for a pod network', () => {
    let decoded = 0;
    for (const c of cases.filter((x) => x.method === 'RunPodSandbox')) {
      let request: {
        config?: {
          linux?: { securityContext?: { namespaceOptions?: { network?: unknown } | null } | null } | null;
        } | null;
      };
      try {
        request = runtimeServiceV1.RunPodSandbox.requestDeserialize(c.bytes) as typeof request;
      } catch {
        continue;
      }
      decoded++;
      assert.equal(request.config?.linux?.securityContext?.namespaceOptions?.network, 'NODE');
    }
    assert.ok(decoded > 100, `enough RunPodSandbox requests decode (${decoded})`);
  });
});
