import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { decodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { runCli } from '../support/cli.js';
import { type CriHarness, startCriHarness } from '../support/cri-harness.js';

/*
 * Upgrades: this build started on a ledger that the previous release wrote (release
 * 8d46b4d, the end of the first round: SandboxReserved v1 without port mappings, no
 * HostPathCreated, no session events). The fixture was made by that release's own
 * service on a real containerd (test/fixtures/make-ledger-fixture.sh); its containers
 * are not in this test's containerd, as after a node's disk was moved or its containerd
 * state lost, so the service must also reconcile what it cannot find.
 */

const FIXTURE = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'test',
  'fixtures',
  'ledger-8d46b4d.tar.gz',
);

interface Fixture {
  keptPod: string;
  removedPod: string;
  runningContainer: string;
  exitedContainer: string;
  removedContainer: string;
}

describe('upgrade from the previous release’s ledger', () => {
  let h: CriHarness;
  let fixture: Fixture;
  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-upgrade-' });
    await h.serve().stop('SIGTERM');
    await rm(join(h.root, 'ledger'), { recursive: true, force: true });
    execFileSync('tar', ['-xzf', FIXTURE, '-C', h.root]);
    fixture = JSON.parse(readFileSync(join(h.root, 'fixture.json'), 'utf8')) as Fixture;
    await h.restart();
  });
  after(() => h?.cleanup());

  const allEvents = async (): Promise<LedgerEvent[]> => {
    const client = LedgerClient.connect(h.socket);
    const out: LedgerEvent[] = [];
    try {
      for await (const r of client.readEvents({})) out.push(decodeEvent(r.json));
    } finally {
      client.close();
    }
    return out;
  };

  it('reads every event the old release wrote, old schema versions included', async () => {
    const events = await allEvents();
    assert.ok(events.length > 20, `${events.length} events`);
    const reserved = events.filter((e) => e.type === 'SandboxReserved');
    assert.equal(reserved.length, 2);
    assert.ok(
      reserved.every((e) => e.v === 1),
      'written as v1, read by this build',
    );
  });

  it('serves the old release’s pods and containers as they were left, and forgets the removed ones', async () => {
    const pods = await h.call<{ items: Array<{ id: string }> }>('listPodSandbox', {});
    assert.deepEqual(
      pods.items.map((p) => p.id),
      [fixture.keptPod],
    );
    const containers = await h.call<{ containers: Array<{ id: string }> }>('listContainers', {});
    assert.deepEqual(
      containers.containers.map((c) => c.id).sort(),
      [fixture.runningContainer, fixture.exitedContainer].sort(),
    );
    const exited = await h.call<{ status: { state: string; exitCode: number } }>('containerStatus', {
      containerId: fixture.exitedContainer,
    });
    assert.equal(exited.status.state, 'CONTAINER_EXITED');
    assert.equal(exited.status.exitCode, 3);
  });

  it('goes on writing after the old events, and the log still keeps every invariant', async () => {
    const before = (await allEvents()).at(-1)!.seq;
    const config = {
      metadata: { name: 'after-upgrade', uid: 'uid-after-upgrade', namespace: 'upgrade', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config });
    await h.call('stopPodSandbox', { podSandboxId });
    await h.call('removePodSandbox', { podSandboxId });
    const added = (await allEvents()).filter((e) => e.seq > before);
    assert.ok(
      added.some((e) => e.type === 'SandboxReserved' && e.v === 2),
      'new events at the current version',
    );
    await h.serve().stop('SIGTERM');
    const verified = await runCli(['verify', '--db', join(h.root, 'ledger')]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    await h.restart();
  });
});
