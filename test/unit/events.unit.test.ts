import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AmbiguousIdError,
  CorruptRecordError,
  InvalidArgumentError,
  UnknownEventError,
} from '../../src/domain/errors.js';
import { decodeEvent, encodeEvent, EVENT_TYPES, parseNewEvent, SandboxReservedV1 } from '../../src/domain/events.js';
import { parseStream, resolveIdPrefix } from '../../src/domain/ids.js';
import { Projections } from '../../src/projections/projections.js';
import { container, ev, hexId, streams } from '../support/fixtures.js';
import { history } from '../support/history.js';

const c = container('c1');
const [stored] = history([streams.container(c), ev.nameReserved(c)]);
const json = encodeEvent(stored!);

function decodeWith(patch: Record<string, unknown>): unknown {
  return decodeEvent(JSON.stringify({ ...JSON.parse(json), ...patch }), 1);
}

describe('event decoding', () => {
  it('decodes a stored envelope and re-encodes it to the same bytes', () => {
    const event = decodeEvent(json, 1);
    assert.equal(event.type, 'NameReserved');
    assert.equal(encodeEvent(event), json);
  });

  it('names an unknown type and an unknown schema version', () => {
    assert.throws(
      () => decodeWith({ type: 'ContainerTeleported' }),
      (e: unknown) => e instanceof UnknownEventError && /ContainerTeleported v1 at seq 1/.test(e.message),
    );
    assert.throws(
      () => decodeWith({ v: 2 }),
      (e: unknown) => e instanceof UnknownEventError && /NameReserved v2/.test(e.message),
    );
  });

  it('names the envelope field that is wrong, with the seq', () => {
    assert.throws(
      () => decodeWith({ at: 'yesterday' }),
      (e: unknown) => e instanceof CorruptRecordError && e.seq === 1 && /at: /.test(e.message),
    );
    assert.throws(() => decodeWith({ id: 'not-a-ulid' }), /id: must be a ULID/);
    assert.throws(() => decodeWith({ seq: 7 }), /record says seq 7/);
    assert.throws(
      () => decodeEvent('{"seq":1,', 1),
      (e: unknown) => e instanceof CorruptRecordError && /not valid JSON/.test(e.message),
    );
  });

  it('names the payload field that fails its schema', () => {
    const data = { ...JSON.parse(json).data, containerId: 'xyz' };
    assert.throws(
      () => decodeWith({ data }),
      (e: unknown) => e instanceof CorruptRecordError && /NameReserved v1 data: containerId/.test(e.message),
    );
  });

  it('checks proposed events against their schema before they are written', () => {
    assert.throws(
      () => parseNewEvent({ ...ev.containerStarted(), data: { pid: -1, startedAt: 'now' } } as never),
      (e: unknown) => e instanceof InvalidArgumentError && /ContainerStarted\.data: pid/.test(e.message),
    );
    assert.throws(() => parseNewEvent({ ...ev.containerStarted(), correlationId: '' }), /correlationId/);
  });

  it('has a schema for the CreateContainer saga and the lifecycle events', () => {
    for (const type of [
      'NameReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'ContainerCreated',
      'Compensated',
      'SandboxReserved',
      'SandboxReady',
      'SandboxStopped',
      'SandboxRemoved',
      'ContainerStarted',
      'ContainerExited',
      'ContainerStopped',
      'ContainerRemoved',
    ]) {
      assert.ok(EVENT_TYPES.includes(type as never), type);
    }
  });
});

describe('SandboxReserved versions', () => {
  const id = hexId('pod-v1');
  const [reserved] = history([`sandbox-${id}`, ev.sandboxReserved({ id, name: 'web_default_uid_0' })]);
  const { portMappings: _none, ...v1Data } = reserved!.data as { portMappings: unknown };
  // As a build before v2 stored it: the v1 schema's keys, in its order.
  const v1 = JSON.stringify({ ...reserved, v: 1, data: SandboxReservedV1.parse(v1Data) });

  it('still reads a v1 record, written before port mappings were recorded, byte for byte, as a pod with none', () => {
    const event = decodeEvent(v1, 1);
    assert.equal(encodeEvent(event), v1);
    const projections = new Projections();
    projections.apply(event);
    assert.deepEqual(projections.sandboxes.get(id)?.portMappings, []);
  });

  it('writes v2, which requires the port mappings', () => {
    assert.equal(reserved!.v, 2);
    assert.throws(
      () => decodeEvent(JSON.stringify({ ...JSON.parse(v1), v: 2 }), 1),
      (e: unknown) => e instanceof CorruptRecordError && /SandboxReserved v2 data: portMappings/.test(e.message),
    );
    assert.throws(
      () => parseNewEvent({ type: 'SandboxReserved', correlationId: 'r', data: v1Data } as never),
      /SandboxReserved\.data: portMappings/,
    );
  });
});

describe('ids and streams', () => {
  const ids = [hexId('a'), hexId('b')];

  it('resolves a full id or a unique prefix', () => {
    assert.equal(resolveIdPrefix(ids[0]!, ids), ids[0]);
    assert.equal(resolveIdPrefix(ids[1]!.slice(0, 10), ids), ids[1]);
    assert.equal(resolveIdPrefix('0000', ids), undefined);
  });

  it('refuses an ambiguous prefix and a non-hex one', () => {
    assert.throws(() => resolveIdPrefix('ab', ['ab12', 'ab34']), AmbiguousIdError);
    assert.throws(() => resolveIdPrefix('my-pod', ids), InvalidArgumentError);
  });

  it('splits stream names, image names included', () => {
    assert.deepEqual(parseStream(`container-${ids[0]}`), { kind: 'container', id: ids[0] });
    assert.deepEqual(parseStream('image-docker.io/library/busybox:latest'), {
      kind: 'image',
      id: 'docker.io/library/busybox:latest',
    });
    assert.throws(() => parseStream('volume-x'), InvalidArgumentError);
  });
});
