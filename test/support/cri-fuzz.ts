import { loadSync } from '@grpc/proto-loader';
import fc from 'fast-check';
import { pullTarget } from '../../src/adapters/containerd/image-ref.js';
import {
  CRI_LOADER_OPTIONS,
  CRI_V1_PROTO,
  imageServiceV1,
  runtimeServiceV1,
} from '../../src/adapters/cri/cri-definition.js';
import {
  fixed32Field,
  fixed64Field,
  lengthDelimited,
  nestedGroups,
  splitFields,
  tag,
  varint,
  varintField,
  WIRE,
} from './protobuf-wire.js';

/*
 * fast-check arbitraries of hostile CRI requests, as raw protobuf bytes. The shape
 * comes from the project's own proto files (the descriptors proto-loader reads), so
 * every field of every message can be reached; each value is drawn to be hostile:
 * control bytes, strings that are not UTF-8, huge strings, maps with thousands of
 * entries, int64 extremes, unknown enum values, wrong wire types, unknown fields, and
 * whole messages that are truncated, random, nested thousands of groups deep, or end in
 * a varint that never ends.
 */

interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType?: MessageDescriptor[];
  options?: { mapEntry?: boolean } | null;
}

const PACKAGE = 'runtime.v1';
const definitions = loadSync([CRI_V1_PROTO], CRI_LOADER_OPTIONS) as unknown as Record<
  string,
  { type?: MessageDescriptor }
>;

function messageType(typeName: string, scope: MessageDescriptor | undefined): MessageDescriptor {
  const nested = scope?.nestedType?.find((n) => n.name === typeName);
  if (nested) return nested;
  const found = definitions[`${PACKAGE}.${typeName.replace(/^\.?runtime\.v1\./, '')}`]?.type;
  if (!found) throw new Error(`no message ${typeName} in ${CRI_V1_PROTO}`);
  return found;
}

/** Where a fuzzed PullImage may connect: the test's loopback listener (every other registry is refused by the test). */
export interface FuzzTargets {
  /** Ids the service knows (the test's pod sandbox), mixed into id fields so some requests get past the lookup. */
  knownIds: string[];
  /** `127.0.0.1:<port>`: the only registry a syntactically valid pulled reference may name. */
  loopbackRegistry: string;
}

const HOSTILE_TEXT = [
  '',
  ' ',
  '.',
  '..',
  '../../etc',
  '../../../etc/shadow',
  '/etc/shadow',
  '/',
  '//',
  'localhost/../../etc/shadow',
  'localhost/etc/passwd',
  'runtime/default',
  'unconfined',
  'a\nb',
  'a\rb',
  'a\u0000b',
  '\u0000',
  'HOME',
  'A=B',
  '=',
  'x'.repeat(300),
  '-1',
  '2147483648',
  '4294967296',
  '99999999999999999999999',
  'NaN',
  'Infinity',
  '1e309',
  '0x10',
  '1+kernel.core_pattern=|/tmp/x',
  'kernel.core_pattern',
  '%s%n%x',
  '${jndi:ldap://127.0.0.1/x}',
  '$(reboot)',
  '`reboot`',
  ';reboot',
  '\u202e',
  '\ud800',
  '\ufeff',
  '\u{10ffff}',
  'busybox',
  'docker.io/library/busybox:latest',
  'sha256:',
  'sha256:zz',
  '@sha256:' + '0'.repeat(64),
  'NODE',
  'POD',
  'CONTAINER_RUNNING',
];

const utf8 = (s: string) => Buffer.from(s, 'utf8');

/** Bytes for a string field: text, invalid UTF-8, control bytes, sometimes megabytes. */
function stringBytes(extra: readonly string[]): fc.Arbitrary<Buffer> {
  const key = extra.join('\u0000');
  const known = stringArbitraries.get(key);
  if (known) return known;
  const ordinary = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom(...HOSTILE_TEXT, ...extra).map(utf8) },
    { weight: 15, arbitrary: fc.string({ maxLength: 40 }).map(utf8) },
    { weight: 10, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map(utf8) },
    { weight: 10, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(fc.string({ maxLength: 10 }), fc.integer({ min: 0, max: 31 }), fc.string({ maxLength: 10 }))
        .map(([a, c, b]) => utf8(`${a}${String.fromCharCode(c)}${b}`)),
    },
    { weight: 4, arbitrary: fc.constantFrom(...extra, 'busybox').map(utf8) },
  );
  // A request has up to a hundred string fields: one in a thousand is huge, so a few percent of requests carry one.
  const huge = fc
    .tuple(fc.integer({ min: 64 * 1024, max: 1024 * 1024 }), fc.constantFrom(0x61, 0xff, 0x0a, 0xc3))
    .map(([n, b]) => Buffer.alloc(n, b));
  const built = fc.oneof({ weight: 999, arbitrary: ordinary }, { weight: 1, arbitrary: huge });
  stringArbitraries.set(key, built);
  return built;
}
const stringArbitraries = new Map<string, fc.Arbitrary<Buffer>>();

const INT64_EDGES = [
  0n,
  1n,
  -1n,
  2n ** 31n - 1n,
  2n ** 31n,
  -(2n ** 31n) - 1n,
  2n ** 32n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  4n * 1024n * 1024n - 1n,
];
const int64 = fc.oneof(fc.constantFrom(...INT64_EDGES), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
const int32 = fc.oneof(fc.constantFrom(0, -1, 1, 2 ** 31 - 1, -(2 ** 31), 1000, -1000, 65536), fc.integer());

/** A field with a wire type its declaration does not have, and a payload of that type. */
function wrongWire(field: number, correct: number): fc.Arbitrary<Buffer> {
  const choices = [
    { wire: WIRE.varint, arb: int64.map((v) => varintField(field, v)) },
    { wire: WIRE.fixed64, arb: int64.map((v) => fixed64Field(field, v)) },
    { wire: WIRE.bytes, arb: fc.uint8Array({ maxLength: 30 }).map((b) => lengthDelimited(field, Buffer.from(b))) },
    { wire: WIRE.startGroup, arb: fc.integer({ min: 1, max: 50 }).map((d) => nestedGroups(field, d)) },
    { wire: WIRE.fixed32, arb: int32.map((v) => fixed32Field(field, v)) },
    { wire: 6, arb: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.concat([tag(field, 6), Buffer.from(b)])) },
  ].filter((c) => c.wire !== correct);
  return fc.oneof(...choices.map((c) => c.arb));
}

/** Fields no CRI message has, which a decoder must skip. */
const unknownField = fc
  .tuple(
    fc.integer({ min: 1000, max: 2 ** 29 - 1 }),
    fc.constantFrom(WIRE.varint, WIRE.bytes, WIRE.fixed32, WIRE.fixed64),
  )
  .chain(([n, wire]) =>
    wire === WIRE.varint
      ? int64.map((v) => varintField(n, v))
      : wire === WIRE.bytes
        ? fc.uint8Array({ maxLength: 64 }).map((b) => lengthDelimited(n, Buffer.from(b)))
        : wire === WIRE.fixed32
          ? int32.map((v) => fixed32Field(n, v))
          : int64.map((v) => fixed64Field(n, v)),
  );

const MAX_DEPTH = 6;

interface Overrides {
  /** Field name -> arbitrary of the field's payload bytes (for string fields), replacing the generic one. */
  strings: Record<string, fc.Arbitrary<Buffer>>;
  /** Field name -> the whole encoded field, always sent. */
  fixed: Record<string, Buffer>;
  /** Field names always present. */
  required: Set<string>;
  /** Field names whose wire type must stay right (a mistyped string can decode as another string). */
  exactWire: Set<string>;
  /** No field of this request gets a wrong wire type (one can swallow the fields after it). */
  noWrongWire?: boolean;
  /** Built arbitraries by message and depth: building them per draw would dominate the run. */
  memo?: Map<string, fc.Arbitrary<Buffer>>;
}

function scalarField(
  f: FieldDescriptor,
  o: Overrides,
  extra: readonly string[],
): { wire: number; arb: fc.Arbitrary<Buffer> } {
  switch (f.type) {
    case 'TYPE_STRING':
    case 'TYPE_BYTES':
      return {
        wire: WIRE.bytes,
        arb: (o.strings[f.name] ?? stringBytes(extra)).map((b) => lengthDelimited(f.number, b)),
      };
    case 'TYPE_INT64':
    case 'TYPE_UINT64':
    case 'TYPE_SINT64':
      return { wire: WIRE.varint, arb: int64.map((v) => varintField(f.number, v)) };
    case 'TYPE_BOOL':
      // Not 2^40: protobufjs (grpc-js's decoder) fails on 6- to 9-byte varints in 32-bit fields, and that would end most requests at decoding.
      return { wire: WIRE.varint, arb: fc.constantFrom(0, 1, 2, 255).map((v) => varintField(f.number, v)) };
    case 'TYPE_DOUBLE':
    case 'TYPE_FIXED64':
    case 'TYPE_SFIXED64':
      return { wire: WIRE.fixed64, arb: int64.map((v) => fixed64Field(f.number, v)) };
    case 'TYPE_FLOAT':
    case 'TYPE_FIXED32':
    case 'TYPE_SFIXED32':
      return { wire: WIRE.fixed32, arb: int32.map((v) => fixed32Field(f.number, v)) };
    default:
      // int32, uint32, enums (known and unknown values, negatives as 10-byte varints)
      return { wire: WIRE.varint, arb: int32.map((v) => varintField(f.number, BigInt.asUintN(64, BigInt(v)))) };
  }
}

/** A map<string,string> with thousands of entries, one of them hostile. */
function hugeMap(field: number, extra: readonly string[]): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.integer({ min: 1000, max: 10_000 }), stringBytes(extra), stringBytes(extra))
    .map(([n, key, value]) => {
      const entries: Buffer[] = [];
      for (let i = 0; i < n; i++)
        entries.push(
          lengthDelimited(field, Buffer.concat([lengthDelimited(1, utf8(`k${i}`)), lengthDelimited(2, utf8(`v${i}`))])),
        );
      entries.push(lengthDelimited(field, Buffer.concat([lengthDelimited(1, key), lengthDelimited(2, value)])));
      return Buffer.concat(entries);
    });
}

function messageBytes(
  type: MessageDescriptor,
  depth: number,
  o: Overrides,
  extra: readonly string[],
): fc.Arbitrary<Buffer> {
  if (depth > MAX_DEPTH) return fc.constant(Buffer.alloc(0));
  o.memo ??= new Map();
  const key = `${type.name}@${depth}`;
  const known = o.memo.get(key);
  if (known) return known;
  const built = buildMessageBytes(type, depth, o, extra);
  o.memo.set(key, built);
  return built;
}

function buildMessageBytes(
  type: MessageDescriptor,
  depth: number,
  o: Overrides,
  extra: readonly string[],
): fc.Arbitrary<Buffer> {
  const fields = type.field.map((f) => {
    const fixed = o.fixed[f.name];
    if (fixed) return fc.constant(fixed);
    let one: { wire: number; arb: fc.Arbitrary<Buffer> };
    let map = false;
    if (f.type === 'TYPE_MESSAGE') {
      const sub = messageType(f.typeName, type);
      map = sub.options?.mapEntry === true;
      one = { wire: WIRE.bytes, arb: messageBytes(sub, depth + 1, o, extra).map((b) => lengthDelimited(f.number, b)) };
    } else {
      one = scalarField(f, o, extra);
    }
    // Rare per field: a request has dozens of fields, and one mistyped field fails the whole decode.
    const element =
      o.noWrongWire || o.exactWire.has(f.name)
        ? one.arb
        : fc.oneof({ weight: 1000, arbitrary: one.arb }, { weight: 1, arbitrary: wrongWire(f.number, one.wire) });
    const repeated = f.label === 'LABEL_REPEATED';
    const value = repeated
      ? fc.oneof(
          { weight: 100, arbitrary: fc.array(element, { maxLength: 4 }).map((a) => Buffer.concat(a)) },
          { weight: map ? 1 : 0, arbitrary: hugeMap(f.number, extra) },
        )
      : element;
    if (o.required.has(f.name)) return value;
    // The outer fields are nearly always there, so most requests get past "must be set".
    return fc.option(value, { freq: depth <= 1 ? 9 : 2, nil: undefined });
  });
  return fc
    .tuple(fc.tuple(...fields), fc.array(unknownField, { maxLength: 2 }), fc.boolean())
    .map(([present, unknown, shuffle]) => {
      const parts = [...present.filter((p): p is Buffer => p !== undefined), ...unknown];
      if (shuffle) parts.reverse();
      return Buffer.concat(parts);
    });
}

/** Whole-message damage: most requests are well-framed protobuf, some are not protobuf at all. */
function damaged(
  message: fc.Arbitrary<Buffer>,
  mistypedFields: readonly number[],
): fc.Arbitrary<{ bytes: Buffer; damage: string }> {
  return fc.oneof(
    { weight: 88, arbitrary: message.map((bytes) => ({ bytes, damage: 'none' })) },
    {
      weight: 3,
      arbitrary: fc.uint8Array({ maxLength: 256 }).map((b) => ({ bytes: Buffer.from(b), damage: 'random bytes' })),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(message, fc.double({ min: 0, max: 1, noNaN: true }))
        .filter(([m]) => m.length > 1)
        .map(([m, r]) => ({ bytes: m.subarray(0, Math.floor(r * (m.length - 1))), damage: 'truncated' })),
    },
    {
      weight: 2,
      arbitrary: fc
        .integer({ min: 1_000, max: 200_000 })
        .map((d) => ({ bytes: nestedGroups(1999, d), damage: 'deep groups' })),
    },
    {
      weight: 2,
      arbitrary: message.map((m) => ({
        bytes: Buffer.concat([m, tag(1, WIRE.varint), Buffer.alloc(11, 0xff)]),
        damage: 'endless varint',
      })),
    },
    {
      weight: 2,
      arbitrary: message.map((m) => ({
        bytes: Buffer.concat([m, tag(2, WIRE.bytes), varint(2 ** 31)]),
        damage: 'length past the end',
      })),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(message, fc.constantFrom(...mistypedFields))
        .chain(([m, n]) => wrongWire(n, -1).map((w) => ({ bytes: Buffer.concat([m, w]), damage: 'wrong wire type' }))),
    },
  );
}

export interface FuzzCase {
  method: string;
  path: string;
  bytes: Buffer;
  damage: string;
  /** For PullImage: the decoded reference is valid and names the loopback registry, so a pull may start. */
  pullStarts: boolean;
}

const RUNTIME = '/runtime.v1.RuntimeService/';
const IMAGES = '/runtime.v1.ImageService/';

/** The methods the fuzzer calls, with their request message. */
export const FUZZ_METHODS: ReadonlyArray<{ method: string; path: string; request: string }> = [
  ['CreateContainer', RUNTIME],
  ['RunPodSandbox', RUNTIME],
  ['StartContainer', RUNTIME],
  ['StopContainer', RUNTIME],
  ['RemoveContainer', RUNTIME],
  ['ContainerStatus', RUNTIME],
  ['ExecSync', RUNTIME],
  ['UpdateContainerResources', RUNTIME],
  ['PullImage', IMAGES],
].map(([method, service]) => ({ method: method!, path: `${service}${method}`, request: `${method}Request` }));

/**
 * A reference that must not make the service dial anyone but the loopback listener: a
 * reference that parses is moved under `loopbackRegistry`; one that does not stays as
 * it is (the service must refuse it before any dial).
 */
export function confinedReference(bytes: Buffer, loopbackRegistry: string): { bytes: Buffer; valid: boolean } {
  // As the service reads it: UTF-8 with replacement characters, then trimmed (image-handlers.ts).
  const text = bytes.toString('utf8').trim();
  const registry = registryOf(text);
  if (registry === undefined) return { bytes, valid: false };
  if (registry === loopbackRegistry) return { bytes, valid: true };
  const moved = `${loopbackRegistry}/${text.replace(/^[^/]*\//, '')}`;
  const movedRegistry = registryOf(moved);
  if (movedRegistry === loopbackRegistry) return { bytes: utf8(moved), valid: true };
  // Neither the original nor a loopback form is safe to send: send something that cannot parse.
  return { bytes: utf8(`\u0000${text}`), valid: false };
}

/** One fuzz case: a method, and hostile bytes for its request. */
export function fuzzCase(t: FuzzTargets): fc.Arbitrary<FuzzCase> {
  const ids = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...t.knownIds).map(utf8) },
    { weight: 1, arbitrary: fc.constantFrom(...t.knownIds).map((id) => utf8(id.slice(0, 6))) },
    { weight: 2, arbitrary: fc.stringMatching(/^[0-9a-f]{64}$/).map(utf8) },
    { weight: 3, arbitrary: stringBytes(t.knownIds) },
  );
  const refs = fc.oneof(
    stringBytes([]),
    fc
      .tuple(
        fc.constantFrom(
          '',
          `${t.loopbackRegistry}/`,
          'docker.io/',
          'registry.example/',
          'localhost:5000/',
          'LOCALHOST/',
          '[::1]:1/',
        ),
        fc.stringMatching(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+)?$/),
        fc.constantFrom(
          '',
          ':latest',
          ':v1.0',
          ':-bad',
          `@sha256:${'a'.repeat(64)}`,
          '@sha256:short',
          ':tag@sha256:' + 'b'.repeat(64),
        ),
      )
      .map(([d, n, s]) => utf8(`${d}${n}${s}`)),
  );
  const methods = FUZZ_METHODS.map((m) => {
    const o: Overrides = {
      strings: { podSandboxId: ids, containerId: ids },
      fixed: {},
      required: new Set(),
      exactWire: new Set(),
    };
    if (m.method === 'PullImage') {
      Object.assign(o.strings, { image: refs, userSpecifiedImage: refs, imageRef: refs });
      o.exactWire = new Set(['image', 'userSpecifiedImage', 'imageRef']);
    }
    if (m.method === 'CreateContainer') {
      // Often far enough to build a spec: a name, an image this service has, the test's pod.
      for (const name of ['config', 'metadata', 'name', 'image', 'podSandboxId', 'sandboxConfig']) o.required.add(name);
      o.strings['image'] = fc.oneof(fc.constant(utf8('busybox')), stringBytes(t.knownIds));
    }
    if (m.method === 'RunPodSandbox') podOverrides(o);
    const message = messageBytes(messageType(m.request, undefined), 0, o, t.knownIds);
    const cases = damaged(message, m.method === 'RunPodSandbox' ? [2, 3] : [1, 2, 3]).map(({ bytes, damage }) => ({
      method: m.method,
      path: m.path,
      bytes,
      damage,
      pullStarts: false,
    }));
    return m.method === 'RunPodSandbox' ? cases.map(hostNetworkOnly) : cases;
  });
  return fc.oneof(...methods).map((c) => (c.method === 'PullImage' ? confinePull(c, t.loopbackRegistry) : c));
}

/**
 * Every RunPodSandbox gets the host network, with its wire types intact: the test runs no
 * CNI, and a pod network would fail after the name is reserved (a failure with events,
 * not a refused request). Its cgroup parent is empty or one the service must refuse, so
 * an accepted pod's cgroup lands under the containerd namespace, never elsewhere on the
 * host. Everything else is fuzzed; a pod the service accepts runs a real pause container.
 */
function podOverrides(o: Overrides): void {
  o.fixed['network'] = varintField(1, 2); // NamespaceOption.network = NODE
  for (const name of ['config', 'linux', 'securityContext', 'namespaceOptions']) {
    o.required.add(name);
    o.exactWire.add(name);
  }
  o.noWrongWire = true;
  for (const name of ['metadata', 'name', 'uid', 'namespace']) o.required.add(name);
  o.strings['cgroupParent'] = fc.constantFrom('', '../../system.slice', '/kubepods/../..', 'pods\n').map(utf8);
}

/**
 * The last guard for the rule above, with the service's own decoder: a RunPodSandbox
 * that would decode to a pod network (random bytes that happen to parse, say) gets an
 * endless varint appended, so the service cannot decode it at all.
 */
function hostNetworkOnly(c: FuzzCase): FuzzCase {
  let decoded: { config?: { linux?: { securityContext?: { namespaceOptions?: { network?: unknown } } } } | null };
  try {
    decoded = runtimeServiceV1.RunPodSandbox.requestDeserialize(c.bytes) as typeof decoded;
  } catch {
    return c;
  }
  if (decoded.config?.linux?.securityContext?.namespaceOptions?.network === 'NODE') return c;
  return {
    ...c,
    bytes: Buffer.concat([c.bytes, tag(1, WIRE.varint), Buffer.alloc(11, 0xff)]),
    damage: `${c.damage}, made undecodable (pod network)`,
  };
}

/**
 * Rewrites the references inside a PullImage so none can leave loopback, and says
 * whether a pull may start. The last word is the service's own decoder: a request it
 * would read as naming another registry (my split and protobufjs can disagree on a
 * mistyped field) gets an endless varint appended, so it cannot be decoded at all.
 */
function confinePull(c: FuzzCase, loopbackRegistry: string): FuzzCase {
  let pullStarts = false;
  let bytes = c.bytes;
  // Top level: field 1 is the ImageSpec, whose fields 1, 18 and 20 are references; re-encode them.
  const fields = splitFields(c.bytes);
  if (fields !== undefined) {
    const out = fields.map((f) => {
      if (f.number !== 1 || f.wire !== WIRE.bytes) return f.raw;
      const inner = splitFields(f.payload!);
      if (inner === undefined) return f.raw;
      const spec = inner.map((g) => {
        if (![1, 18, 20].includes(g.number) || g.wire !== WIRE.bytes) return g.raw;
        const confined = confinedReference(g.payload!, loopbackRegistry);
        if (g.number === 1) pullStarts = confined.valid;
        return lengthDelimited(g.number, confined.bytes);
      });
      return lengthDelimited(1, Buffer.concat(spec));
    });
    bytes = Buffer.concat(out);
  }
  let request: { image?: { image?: string; userSpecifiedImage?: string; imageRef?: string } | null };
  try {
    request = imageServiceV1.PullImage.requestDeserialize(bytes) as typeof request;
  } catch {
    return { ...c, bytes, pullStarts: false };
  }
  const refs = [request.image?.image, request.image?.userSpecifiedImage, request.image?.imageRef];
  if (refs.every((ref) => [undefined, loopbackRegistry].includes(registryOf(ref ?? ''))))
    return { ...c, bytes, pullStarts };
  return {
    ...c,
    bytes: Buffer.concat([bytes, tag(1, WIRE.varint), Buffer.alloc(11, 0xff)]),
    damage: `${c.damage}, made undecodable (a registry off loopback)`,
    pullStarts: false,
  };
}

/** The registry a reference names, read as the service reads it (trimmed); undefined when it does not parse. */
function registryOf(ref: string): string | undefined {
  try {
    return pullTarget(ref.trim()).registry;
  } catch {
    return undefined;
  }
}
