import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { hexId } from '../support/fixtures.js';

/*
 * The CRI makes stop and remove idempotent: kubelet retries them, and the thing may be
 * gone by the retry. Each of them on an id (or image) the service never had answers OK,
 * writes no event, and leaves the service serving.
 */

describe('stop and remove of what does not exist', () => {
  let h: CriHarness;
  const head = (): Promise<number> => ledgerHead(h.socket);

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-unknown-' });
  });
  after(() => h?.cleanup());

  it('answers OK to StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox and RemoveImage of unknown ids, writing nothing', async () => {
    const before = await head();
    const containerId = hexId('never-created-container');
    const podSandboxId = hexId('never-created-pod');
    const answers = {
      StopContainer: await h.call('stopContainer', { containerId, timeout: 10 }),
      RemoveContainer: await h.call('removeContainer', { containerId }),
      StopPodSandbox: await h.call('stopPodSandbox', { podSandboxId }),
      RemovePodSandbox: await h.call('removePodSandbox', { podSandboxId }),
      RemoveImage: await h.imageCall('removeImage', { image: { image: 'docker.io/library/never-pulled:1.0' } }),
    };
    assert.deepEqual(Object.keys(answers), [
      'StopContainer',
      'RemoveContainer',
      'StopPodSandbox',
      'RemovePodSandbox',
      'RemoveImage',
    ]);
    for (const [rpc, answer] of Object.entries(answers)) assert.deepEqual(answer, {}, `${rpc} answered an empty OK`);
    // A second time is the kubelet retry: still OK.
    await h.call('stopContainer', { containerId, timeout: 0 });
    assert.equal(await head(), before, 'no event was written');
    const version = await h.call<{ runtimeName: string }>('version', {});
    assert.equal(version.runtimeName, 'cri-ledger');
  });
});
