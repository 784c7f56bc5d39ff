import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';

/*
 * `verify --against-containerd` compares the log with the containerd the service works
 * on, not with the CLI's defaults: through the socket it asks the service; from --db it
 * needs the address and namespace said explicitly. The service here uses a namespace
 * other than the default, so a comparison with the default one would be wrong.
 */

const NAMESPACE = 'verify-target-ns';

describe('verify --against-containerd compares the right containerd', () => {
  let h: CriHarness;

  before(async () => {
    h = await startCriHarness({
      prefix: 'cri-ledger-e2e-verify-',
      env: { CRI_LEDGER_CONTAINERD_NAMESPACE: NAMESPACE },
    });
    const pod = {
      metadata: { name: 'verify', uid: 'uid-verify', namespace: 'default', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    };
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod });
    const { containerId } = await h.call<{ containerId: string }>('createContainer', {
      podSandboxId,
      sandboxConfig: pod,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
    });
    await h.call('startContainer', { containerId });
  });
  after(async () => {
    if (h) await removeAllPods(h).catch(() => undefined);
    await h?.cleanup();
  });

  it("through the socket, takes the service's address and namespace without being told", async () => {
    const result = await runCli(['verify', '--against-containerd', '--socket', h.socket]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`containerd at ${h.containerd.address}, namespace ${NAMESPACE} \\(from the service\\)`),
    );
    assert.match(result.stdout, /in sync: no differences/);
  });

  it("says so when the CLI's own namespace differs, and still compares the service's", async () => {
    const result = await runCli([
      'verify',
      '--against-containerd',
      '--socket',
      h.socket,
      '--containerd-namespace',
      'cri-ledger',
    ]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stderr,
      /containerd\.namespace cri-ledger \(from --containerd-namespace\) differs from the service's/,
    );
    assert.match(result.stdout, new RegExp(`namespace ${NAMESPACE} \\(from the service\\)`));
  });

  it('from --db, refuses to guess which containerd, and compares the one it is told', async () => {
    await h.serve().stop();
    const db = join(h.root, 'ledger');
    const unsaid = await runCli(['verify', '--against-containerd', '--db', db]);
    assert.notEqual(unsaid.code, 0);
    assert.match(unsaid.stderr, /--containerd-address and --containerd-namespace/);
    const told = ['verify', '--against-containerd', '--db', db, '--containerd-address', h.containerd.address];
    const right = await runCli([...told, '--containerd-namespace', NAMESPACE]);
    assert.equal(right.code, 0, right.stdout + right.stderr);
    assert.match(right.stdout, /in sync: no differences/);
    // The default namespace holds none of the service's containers: the log's are missing there.
    const wrong = await runCli([...told, '--containerd-namespace', 'cri-ledger']);
    assert.equal(wrong.code, 3, wrong.stdout + wrong.stderr);
    assert.match(wrong.stdout, /in the log only/);
    await h.restart();
  });
});
