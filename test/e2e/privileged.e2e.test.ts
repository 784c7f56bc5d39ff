import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES } from '../../src/adapters/oci/capabilities.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';

/*
 * Privileged pods and containers, and containers that add ALL, on this host: its
 * service process lacks CAP_SYS_RESOURCE (see /proc/self/status), so a spec asking for
 * every capability the kernel knows fails at StartContainer with runc's "unable to
 * apply caps: operation not permitted". They get what the service holds instead (as
 * containerd's WithAllCurrentCapabilities), and run.
 */

interface Verbose {
  pid: number;
  spec: { process: { capabilities: { bounding: string[]; effective: string[]; permitted: string[] } } };
}

/** CapBnd and CapEff of a process, as hex bitmaps. */
function capSets(pid: number): { bounding: bigint; effective: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const set = (name: string) => BigInt(`0x${new RegExp(`^${name}:\\s*([0-9a-f]+)`, 'm').exec(status)![1]}`);
  return { bounding: set('CapBnd'), effective: set('CapEff') };
}

const namesOf = (bits: bigint): string[] => ALL_CAPABILITIES.filter((_, bit) => ((bits >> BigInt(bit)) & 1n) === 1n);

describe('privileged pods and containers', () => {
  let h: CriHarness;
  let held: string[] = [];
  let heldBits = 0n;
  const pod = (name: string, privileged: boolean) => ({
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    // The pod keeps the host's network (no CNI here) but has its own pid, ipc and uts.
    linux: { securityContext: { privileged, namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  });
  const run = async (name: string, sandboxConfig: object, securityContext: object) => {
    const podSandboxId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: sandboxConfig }))
      .podSandboxId;
    const config = {
      metadata: { name, attempt: 0 },
      image: { image: 'busybox' },
      command: ['sleep', '3600'],
      linux: { securityContext },
    };
    const { containerId } = await h.call<{ containerId: string }>('createContainer', {
      podSandboxId,
      sandboxConfig,
      config,
    });
    await h.call('startContainer', { containerId });
    const status = await h.call<{ status: { state: string }; info: { info: string } }>('containerStatus', {
      containerId,
      verbose: true,
    });
    return { podSandboxId, containerId, state: status.status.state, info: JSON.parse(status.info.info) as Verbose };
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-priv-' });
    const own = capSets(h.serve().child.pid!);
    heldBits = own.bounding & own.effective;
    held = namesOf(heldBits);
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('runs on a host where the service lacks a capability (this one lacks CAP_SYS_RESOURCE)', () => {
    assert.ok(held.length > 0);
    // The tests below would pass on any host; this says whether they ran where they matter.
    assert.equal(
      held.includes('CAP_SYS_RESOURCE'),
      false,
      'the service holds CAP_SYS_RESOURCE here: the regression is not exercised',
    );
  });

  it('starts a privileged pod, and gives its pause the default capabilities the service holds', async () => {
    const sandboxConfig = pod('privpod', true);
    const podSandboxId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: sandboxConfig }))
      .podSandboxId;
    const status = await h.call<{ status: { state: string }; info: { info: string } }>('podSandboxStatus', {
      podSandboxId,
      verbose: true,
    });
    assert.equal(status.status.state, 'SANDBOX_READY');
    const info = JSON.parse(status.info.info) as Verbose;
    const expected = DEFAULT_CAPABILITIES.filter((c) => held.includes(c));
    assert.deepEqual([...info.spec.process.capabilities.bounding].sort(), [...expected].sort());
    const pause = capSets(info.pid);
    assert.deepEqual(namesOf(pause.bounding).sort(), [...expected].sort(), 'the pause process has them');
  });

  it('starts a privileged container (RuntimeDefault seccomp asked for) with exactly the capabilities the service holds', async () => {
    const seccomp = { profileType: 'RuntimeDefault', localhostRef: '' };
    const c = await run('priv', pod('priv', true), { privileged: true, seccomp });
    assert.equal(c.state, 'CONTAINER_RUNNING');
    assert.deepEqual(c.info.spec.process.capabilities, { bounding: held, effective: held, permitted: held });
    const proc = capSets(c.info.pid);
    assert.equal(
      proc.bounding,
      heldBits,
      `CapBnd ${proc.bounding.toString(16)} is the service's ${heldBits.toString(16)}`,
    );
    assert.equal(
      proc.effective,
      heldBits,
      `CapEff ${proc.effective.toString(16)} is the service's ${heldBits.toString(16)}`,
    );
  });

  it('starts a container that adds ALL with the capabilities the service holds, less what it drops', async () => {
    const capabilities = { addCapabilities: ['ALL'], dropCapabilities: ['NET_RAW'], addAmbientCapabilities: [] };
    const c = await run('allcaps', pod('allcaps', false), { capabilities });
    assert.equal(c.state, 'CONTAINER_RUNNING');
    const expected = held.filter((name) => name !== 'CAP_NET_RAW');
    assert.deepEqual(c.info.spec.process.capabilities.bounding, expected);
    assert.deepEqual(namesOf(capSets(c.info.pid).bounding), expected);
    assert.deepEqual(namesOf(capSets(c.info.pid).effective), expected);
  });
});
