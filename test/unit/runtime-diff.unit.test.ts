import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { diffAgainstRuntime, inSync } from '../../src/projections/runtime-diff.js';
import { container, ev, hexId, sandbox, streams } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

describe('the log against containerd', () => {
  it('finds labeled records and id-keyed snapshots the log does not know, and created objects containerd lacks', async () => {
    const ledger = await Ledger.load(new MemoryEventLog());
    const pod = sandbox('pod1');
    const created = container('c1');
    const creating = container('c2');
    await ledger.append(streams.sandbox(pod), 0, [ev.sandboxReserved(pod), ev.sandboxReady()]);
    await ledger.append(streams.container(created), 0, [
      ev.nameReserved(created),
      ev.specGenerated(),
      ev.snapshotPrepared(created),
      ev.containerCreated(),
    ]);
    await ledger.append(streams.container(creating), 0, [ev.nameReserved(creating)]);
    const orphan = hexId('orphan');
    const diff = diffAgainstRuntime(ledger.projections, {
      containers: [
        { id: pod.id, kind: 'sandbox' },
        { id: creating.id, kind: 'container' },
        { id: orphan, kind: 'container' },
        { id: 'someone-elses', kind: '' },
      ],
      activeSnapshots: [pod.id, creating.id, orphan, hexId('stray'), 'cri-ledger-fsinfo-abc-view'],
    });
    assert.deepEqual(diff.orphanContainers, [{ id: orphan, kind: 'container' }]);
    // The orphan record owns its snapshot: removing the record removes it.
    assert.deepEqual(diff.orphanSnapshots, [hexId('stray')]);
    assert.deepEqual(diff.missing, [{ kind: 'container', id: created.id, state: 'CREATED' }]);
    assert.equal(inSync(diff), false);
    assert.equal(inSync({ orphanContainers: [], orphanSnapshots: [], missing: [], orphanLeases: [] }), true);
    assert.deepEqual(diff.orphanLeases, []);
  });

  it("takes cri-ledger's leases older than this process for a dead process's, and compares none without that time", async () => {
    const ledger = await Ledger.load(new MemoryEventLog());
    const inventory = {
      containers: [],
      activeSnapshots: [],
      leases: [
        { id: 'cri-ledger-pull-old', createdAt: '2026-12-04T03:00:00.000Z' },
        { id: 'cri-ledger-view-old', createdAt: '2026-12-04T03:59:59.999Z' },
        { id: 'cri-ledger-pull-mine', createdAt: '2026-12-04T04:00:00.001Z' },
      ],
    };
    const diff = diffAgainstRuntime(ledger.projections, inventory, { leasesBefore: '2026-12-04T04:00:00.000Z' });
    assert.deepEqual(diff.orphanLeases, ['cri-ledger-pull-old', 'cri-ledger-view-old']);
    assert.equal(inSync(diff), false);
    assert.deepEqual(diffAgainstRuntime(ledger.projections, inventory).orphanLeases, []);
  });
});
