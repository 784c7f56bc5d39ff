import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CNI_BIN_DIR, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { dnatChainOf, networkNatLines, podNatLines, removeNetworkHostports } from '../support/hostport-rules.js';
import { removeAllPods } from '../support/pods.js';
import { until } from '../support/until.js';

/*
 * hostPort mappings end with their pod, end to end: a test bridge with portmap chained,
 * pods that serve HTTP on a container port published on one host port, reached from the
 * host through the bridge's gateway address (a local address, so the OUTPUT jump to
 * CNI-HOSTPORT-DNAT applies). CNI DEL must get the pod's port mappings from the log, or
 * portmap leaves its DNAT chain and the next pod on that port is unreachable.
 */

const CONTAINER_PORT = 8080;
const REACH_TIMEOUT_MS = 20_000;

/** GET / on host:port; resolves with the body, rejects with the socket's error. */
function fetchText(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = get({ host, port, path: '/', agent: false, timeout: 2_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

describe('host ports of pods on a CNI bridge with portmap, over the CRI socket', () => {
  let h: CriHarness;
  const hostPort = randomInt(40_000, 60_000);
  const podIds: string[] = [];
  let gateway = '';

  before(async () => {
    assert.ok(
      existsSync(join(CNI_BIN_DIR, 'portmap')),
      `CNI plugins missing in ${CNI_BIN_DIR}: install containernetworking-plugins`,
    );
    h = await startCriHarness({ portmap: true, prefix: 'cri-ledger-e2e-hostport-' });
    gateway = `${h.subnet!}.1`;
  });

  after(async () => {
    if (!h) return;
    await removeAllPods(h);
    // Whatever a failed DEL left, by the pods' chain names and the network's comments.
    removeNetworkHostports(h.network, podIds);
    await h.cleanup();
  });

  /** A pod publishing CONTAINER_PORT on hostPort; with `body`, a container serving it over HTTP. */
  async function runPod(name: string, body?: string): Promise<{ podId: string; ip: string }> {
    const config = {
      metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
      hostname: name,
      portMappings: [{ protocol: 'TCP', containerPort: CONTAINER_PORT, hostPort, hostIp: '' }],
    };
    const { podSandboxId: podId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config });
    podIds.push(podId);
    if (body !== undefined) {
      const serve = `mkdir -p /www && echo ${body} > /www/index.html && exec httpd -f -p ${CONTAINER_PORT} -h /www`;
      const { containerId } = await h.call<{ containerId: string }>('createContainer', {
        podSandboxId: podId,
        sandboxConfig: config,
        config: { metadata: { name: 'web', attempt: 0 }, image: { image: 'busybox' }, command: ['sh', '-c', serve] },
      });
      await h.call('startContainer', { containerId });
    }
    const status = await h.call<{ status: { network: { ip: string } } }>('podSandboxStatus', { podSandboxId: podId });
    return { podId, ip: status.status.network.ip };
  }

  /** Polls the host port until it answers `body`; fails with the last error (say, "no route to host"). */
  async function assertServes(body: string): Promise<void> {
    const deadline = Date.now() + REACH_TIMEOUT_MS;
    let last = '';
    while (Date.now() < deadline) {
      try {
        last = (await fetchText(gateway, hostPort)).trim();
        if (last === body) return;
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`${gateway}:${hostPort} did not answer "${body}" within ${REACH_TIMEOUT_MS} ms; last: ${last}`);
  }

  function assertHasRules(podId: string, ip: string): void {
    const lines = podNatLines(h.network, podId);
    assert.ok(
      lines.some((l) => l.startsWith(`:${dnatChainOf(h.network, podId)} `)),
      `no DNAT chain for the pod:\n${lines.join('\n')}`,
    );
    assert.ok(
      lines.some((l) => l.includes(`--to-destination ${ip}:${CONTAINER_PORT}`)),
      `no DNAT to ${ip}:${CONTAINER_PORT}:\n${lines.join('\n')}`,
    );
  }

  function assertNoRules(podId: string): void {
    assert.deepEqual(podNatLines(h.network, podId), [], 'the pod left hostport rules in the nat table');
  }

  it('serves two pods in a row through one host port, each removal taking its nat rules along', async () => {
    const first = await runPod('hp-first', 'first');
    assertHasRules(first.podId, first.ip);
    await assertServes('first');
    await h.call('stopPodSandbox', { podSandboxId: first.podId });
    await h.call('removePodSandbox', { podSandboxId: first.podId });
    assertNoRules(first.podId);

    const second = await runPod('hp-second', 'second');
    assert.notEqual(
      second.ip,
      first.ip,
      "host-local gave the second pod the first one's IP: a stale rule would go unnoticed",
    );
    assertHasRules(second.podId, second.ip);
    await assertServes('second');
    await h.call('stopPodSandbox', { podSandboxId: second.podId });
    await h.call('removePodSandbox', { podSandboxId: second.podId });
    assertNoRules(second.podId);
  });

  it('removes the rules when StopPodSandbox comes after a restart of the service', async () => {
    const pod = await runPod('hp-restart', 'restart');
    await assertServes('restart');
    await h.restart();
    await h.call('stopPodSandbox', { podSandboxId: pod.podId });
    assertNoRules(pod.podId);
    await h.call('removePodSandbox', { podSandboxId: pod.podId });
  });

  it('removes the rules and the IP when the netns is gone before StopPodSandbox', async () => {
    const pod = await runPod('hp-nonetns');
    assertHasRules(pod.podId, pod.ip);
    const netns = join(h.root, 'state', 'netns', pod.podId);
    execFileSync('umount', [netns]);
    rmSync(netns);
    await h.call('stopPodSandbox', { podSandboxId: pod.podId });
    assertNoRules(pod.podId);
    assert.equal(existsSync(join(h.ipamDir, pod.ip)), false, 'host-local still holds the IP');
    // The kernel frees a namespace, and its veth, a moment after its last process ends.
    await until('the veth to leave the bridge with the namespace', async () => h.bridgePorts() === '', 10_000);
    await h.call('removePodSandbox', { podSandboxId: pod.podId });
  });

  it('leaves no rule of the network in the nat table once its pods are gone', () => {
    assert.deepEqual(networkNatLines(h.network), []);
    for (const podId of podIds) assertNoRules(podId);
  });
});
