import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { MethodDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import fc from 'fast-check';
import { CONTAINERD_LOADER_OPTIONS } from '../../src/adapters/containerd/containerd-api.js';
import { CRI_LOADER_OPTIONS } from '../../src/adapters/cri/cri-definition.js';
import {
  descriptorJson,
  descriptorPath,
  LEDGER_DECODE_OPTIONS,
  loadServices,
  PROTO_DIR,
  type ProtoSet,
} from '../../src/adapters/grpc/proto.js';
import {
  CONTAINERD_PROTO_SET,
  CRI_PROTO_SET,
  IMAGES_PROTO_SET,
  LEDGER_PROTO_SET,
  PROTO_SETS,
} from '../../src/adapters/grpc/proto-sets.js';
import { fuzzCase, FUZZ_METHODS } from '../support/cri-fuzz.js';

/*
 * The service reads its gRPC services from proto/descriptors/*.json with protobufjs's
 * light build instead of parsing the .proto files with @grpc/proto-loader at each start.
 * These tests hold the two ways equal: the committed JSON is what the .proto files give
 * today, and every method has the same path, streaming flags, client alias and codecs.
 */

type Method = MethodDefinition<object, object>;

const OPTIONS: ReadonlyArray<[ProtoSet, Options]> = [
  [CRI_PROTO_SET, CRI_LOADER_OPTIONS],
  [CONTAINERD_PROTO_SET, CONTAINERD_LOADER_OPTIONS],
  [LEDGER_PROTO_SET, { ...LEDGER_DECODE_OPTIONS, includeDirs: [PROTO_DIR], keepCase: false }],
  [IMAGES_PROTO_SET, { ...LEDGER_DECODE_OPTIONS, includeDirs: [PROTO_DIR], keepCase: false }],
];

/** proto-loader's services of a set, keyed like loadServices's. */
function protoLoaderServices(set: ProtoSet, options: Options): Record<string, Record<string, Method>> {
  const definition = loadSync([...set.files], { ...options, keepCase: set.keepCase });
  const services: Record<string, Record<string, Method>> = {};
  for (const [name, value] of Object.entries(definition)) {
    if (!('format' in value)) services[name] = value as unknown as Record<string, Method>;
  }
  return services;
}

/** Decodes with `decode`, or says how it failed: both codecs must fail alike. */
function attempt(decode: (bytes: Buffer) => object, bytes: Buffer): object | { threw: string } {
  try {
    return decode(bytes);
  } catch (error) {
    return { threw: (error as Error).constructor.name };
  }
}

describe('gRPC services from proto/descriptors', () => {
  it('has committed descriptors that equal what the .proto files give (else run `npm run gen:proto`)', async () => {
    assert.equal(PROTO_SETS.length, 4);
    for (const set of PROTO_SETS) {
      assert.equal(readFileSync(descriptorPath(set), 'utf8'), await descriptorJson(set), `${set.name}.json is current`);
    }
  });

  it("has proto-loader's services and methods: paths, streaming flags and client aliases", () => {
    for (const [set, options] of OPTIONS) {
      const ours = loadServices(set, options);
      const theirs = protoLoaderServices(set, options);
      assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort(), `${set.name}: the same services`);
      assert.ok(Object.keys(ours).length > 0);
      for (const [service, methods] of Object.entries(theirs)) {
        const mine = ours[service] as Record<string, Method>;
        assert.deepEqual(Object.keys(mine).sort(), Object.keys(methods).sort(), `${service}: the same methods`);
        for (const [name, method] of Object.entries(methods)) {
          const { path, requestStream, responseStream, originalName } = mine[name]!;
          assert.deepEqual(
            { path, requestStream, responseStream, originalName },
            {
              path: method.path,
              requestStream: method.requestStream,
              responseStream: method.responseStream,
              originalName: method.originalName,
            },
            `${service}/${name}`,
          );
        }
      }
    }
  });

  it('decodes and encodes every method of every set alike, from an empty message', () => {
    for (const [set, options] of OPTIONS) {
      const ours = loadServices(set, options);
      for (const [service, methods] of Object.entries(protoLoaderServices(set, options))) {
        for (const [name, method] of Object.entries(methods)) {
          const mine = (ours[service] as Record<string, Method>)[name]!;
          for (const side of ['request', 'response'] as const) {
            const decode = side === 'request' ? 'requestDeserialize' : 'responseDeserialize';
            const encode = side === 'request' ? 'requestSerialize' : 'responseSerialize';
            const empty = Buffer.alloc(0);
            const decoded = mine[decode](empty);
            assert.deepEqual(decoded, method[decode](empty), `${service}/${name} ${side}: defaults`);
            assert.deepEqual(mine[encode](decoded), method[encode](decoded), `${service}/${name} ${side}: re-encoded`);
          }
        }
      }
    }
  });

  it('decodes and encodes 2,000 fuzzed CRI requests (hostile and damaged bytes) alike', () => {
    const ours = loadServices(CRI_PROTO_SET, CRI_LOADER_OPTIONS);
    const theirs = protoLoaderServices(CRI_PROTO_SET, CRI_LOADER_OPTIONS);
    const method = (path: string): [Method, Method] => {
      const [, service, name] = path.split('/');
      return [(ours[service!] as Record<string, Method>)[name!]!, theirs[service!]![name!]!];
    };
    assert.ok(FUZZ_METHODS.length > 5);
    let decodedBoth = 0;
    fc.assert(
      fc.property(fuzzCase({ knownIds: ['a'.repeat(64)], loopbackRegistry: '127.0.0.1:5000' }), (c) => {
        const [mine, reference] = method(c.path);
        const a = attempt(mine.requestDeserialize, c.bytes);
        const b = attempt(reference.requestDeserialize, c.bytes);
        assert.deepEqual(a, b, `${c.method} (${c.damage})`);
        if (!('threw' in a)) {
          decodedBoth++;
          assert.deepEqual(mine.requestSerialize(a), reference.requestSerialize(a), `${c.method} re-encoded`);
        }
      }),
      { numRuns: 2_000, seed: 16 },
    );
    assert.ok(decodedBoth > 500, `most cases decode (${decodedBoth})`);
  });
});
