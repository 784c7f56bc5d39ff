import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { criContainerEvents } from '../../src/projections/container-events.js';
import { containerStore } from '../../src/projections/container-store.js';
import { ReadModel } from '../../src/projections/read-model.js';
import { container, ev, sandbox, streams } from '../support/fixtures.js';
import { history } from '../support/history.js';

const pod = sandbox('pod1');
const app = container('app');

describe('which CRI container events a log event stands for', () => {
  const log = history(
    [streams.sandbox(pod), ev.sandboxReserved(pod)],
    [streams.sandbox(pod), ev.sandboxReady()],
    [streams.container(app), ev.nameReserved(app)],
    [streams.container(app), ev.specGenerated()],
    [streams.container(app), ev.snapshotPrepared(app)],
    [streams.container(app), ev.containerCreated()],
    [streams.container(app), ev.containerStarted()],
    [streams.container(app), ev.containerExited(137)],
    [streams.container(app), ev.containerStopped()],
    [streams.container(app), ev.containerRemoved(app)],
    [streams.sandbox(pod), ev.sandboxStopped()],
    [streams.sandbox(pod), ev.sandboxRemoved(pod)],
  );

  it("follows a pod's whole life as containerd's CRI reports it, pods under their sandbox id", () => {
    assert.deepEqual(
      log.flatMap(criContainerEvents).map((e) => [e.kind, e.id === pod.id || e.id === app.id, e.type]),
      [
        ['sandbox', true, 'CONTAINER_CREATED_EVENT'],
        ['sandbox', true, 'CONTAINER_STARTED_EVENT'],
        ['container', true, 'CONTAINER_CREATED_EVENT'],
        ['container', true, 'CONTAINER_STARTED_EVENT'],
        ['container', true, 'CONTAINER_STOPPED_EVENT'],
        ['container', true, 'CONTAINER_DELETED_EVENT'],
        ['sandbox', true, 'CONTAINER_STOPPED_EVENT'],
        ['sandbox', true, 'CONTAINER_DELETED_EVENT'],
      ],
    );
  });

  it('makes no CRI event of saga steps, ContainerStopped (the exit already said it) or a reservation', () => {
    for (const e of log.filter((e) =>
      ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerStopped', 'SandboxReserved'].includes(e.type),
    ))
      assert.deepEqual(criContainerEvents(e), [], e.type);
  });
});

describe('ReadModel.copy', () => {
  it('starts where the original is and moves on without it', () => {
    const [reserved, spec, snapshot, created, started] = history(
      [streams.container(app), ev.nameReserved(app)],
      [streams.container(app), ev.specGenerated()],
      [streams.container(app), ev.snapshotPrepared(app)],
      [streams.container(app), ev.containerCreated()],
      [streams.container(app), ev.containerStarted()],
    );
    const original = new ReadModel(containerStore);
    for (const e of [reserved!, spec!, snapshot!, created!]) original.apply(e);
    const twin = original.copy();
    assert.equal(twin.position(), original.position());
    twin.apply(started!);
    assert.equal(twin.get(app.id)?.state, 'RUNNING');
    assert.equal(original.get(app.id)?.state, 'CREATED', 'the original did not move');
    assert.equal(original.position(), created!.seq);
  });
});
