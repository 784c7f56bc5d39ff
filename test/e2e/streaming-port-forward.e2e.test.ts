import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LedgerEvent } from '../../src/domain/events.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { echoServerConfig } from '../support/echo-server.js';
import { removeAllPods } from '../support/pods.js';
import { ofSession, streamEvents } from '../support/session-events.js';
import { runSpdyClient } from '../support/spdy-go-client.js';
import { until } from '../support/until.js';

/*
 * Port forwarding through the whole service, as `kubectl port-forward` and `crictl
 * port-forward` do it over SPDY: CRI PortForward answers a URL, the client opens a data
 * and an error stream per forwarded connection, and the service connects each one to the
 * port inside the pod's network namespace (or on the host, for a host-network pod). An
 * echo server in the container (test/support/go/tcp-echo-server) sends every byte back,
 * or resets the connection on its reset port. The session is on the record with the
 * bytes per port, never the bytes themselves.
 */

interface ForwardReport {
  requests: number;
  matched: number;
  errors: string[];
}

describe('port-forward sessions end to end, over SPDY', () => {
  let h: CriHarness;
  let netPodId = '';
  let hostPodId = '';
  /** The host-network pod's echo port: the host's network is shared, so it is picked at random. */
  const hostPort = randomInt(20_000, 40_000);
  /** The pod-network echo server resets every connection on this port. */
  const resetPort = 8081;
  const netPod = { metadata: { name: 'pf-net', uid: 'uid-pf-net', namespace: 'default', attempt: 0 } };
  const hostPod = {
    metadata: { name: 'pf-host', uid: 'uid-pf-host', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  /** Runs an echo server on `port` in a container of the pod; resolves once it listens. */
  const runEchoServer = async (podSandboxId: string, sandboxConfig: object, port: number, reset?: number) => {
    const { containerId } = await h.call<{ containerId: string }>('createContainer', {
      podSandboxId,
      sandboxConfig,
      config: { metadata: { name: 'echo', attempt: 0 }, image: { image: 'busybox' }, ...echoServerConfig(port, reset) },
    });
    await h.call('startContainer', { containerId });
    await until(`the echo server to listen on ${port}`, async () => {
      const r = await h.call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['netstat', '-ltn'], timeout: 10 });
      return Buffer.from(r.stdout).toString().includes(`:${port} `);
    });
  };
  const forwardUrl = async (podSandboxId: string, ports: number[]) =>
    (await h.call<{ url: string }>('portForward', { podSandboxId, port: ports })).url;
  /** Forwards `requests` concurrent connections on one SPDY connection, each sending `size` bytes. */
  const forward = async (url: string, port: number, requests: number, size: number) => {
    const args = ['-url', url, '-mode', 'portforward', '-port', String(port)];
    const result = await runSpdyClient([...args, '-requests', String(requests), '-size', String(size)]);
    assert.notEqual(result.code, 2, result.stderr);
    return JSON.parse(result.stdout.toString()) as ForwardReport;
  };
  const forwardEvents = (podSandboxId: string) =>
    streamEvents(h.socket, `sandbox-${podSandboxId}`, ['PortForwardStarted', 'PortForwardEnded']);
  /** The start and end of the session started after `known` events, once it has ended. */
  const endedSession = async (podSandboxId: string, known: number): Promise<[LedgerEvent, LedgerEvent]> => {
    await until('PortForwardEnded', async () => (await forwardEvents(podSandboxId)).length >= known + 2, 30_000);
    const events = await forwardEvents(podSandboxId);
    const [started, ended] = ofSession(events, (events[known]!.data as { sessionId: string }).sessionId);
    assert.equal(started?.type, 'PortForwardStarted');
    assert.equal(ended?.type, 'PortForwardEnded');
    return [started!, ended!];
  };

  before(async () => {
    h = await startCriHarness({ network: true, prefix: 'cri-ledger-e2e-portfwd-' });
    netPodId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: netPod })).podSandboxId;
    hostPodId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: hostPod })).podSandboxId;
    await runEchoServer(netPodId, netPod, 8080, resetPort);
    await runEchoServer(hostPodId, hostPod, hostPort);
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('echoes 32 concurrent connections on one SPDY connection into a pod network namespace, and records the bytes per port', async () => {
    const report = await forward(await forwardUrl(netPodId, [8080]), 8080, 32, 64 * 1024);
    assert.deepEqual(report, { requests: 32, matched: 32, errors: [] });
    const [started, ended] = await endedSession(netPodId, 0);
    assert.equal(started.type === 'PortForwardStarted' && started.data.transport, 'spdy');
    assert.equal(started.type === 'PortForwardStarted' && started.data.protocol, 'portforward.k8s.io');
    assert.deepEqual(started.type === 'PortForwardStarted' && started.data.ports, [8080]);
    assert.equal(ended.type === 'PortForwardEnded' && ended.data.reason, 'client-gone');
    assert.deepEqual(ended.type === 'PortForwardEnded' && ended.data.ports, [
      { port: 8080, connections: 32, errors: 0, bytesIn: 32 * 64 * 1024, bytesOut: 32 * 64 * 1024 },
    ]);
    assert.equal(ended.correlationId, started.correlationId);
    assert.equal(ended.causationId, started.id);
  });

  it('answers a refused port on each request’s error stream as kubelet does, and counts the failures', async () => {
    // The host-network pod's port is open on the host, not in the pod's own namespace.
    const report = await forward(await forwardUrl(netPodId, [hostPort]), hostPort, 3, 16);
    assert.equal(report.matched, 0);
    assert.equal(report.errors.length, 3, JSON.stringify(report));
    for (const error of report.errors)
      assert.match(
        error,
        new RegExp(`^error forwarding port ${hostPort} to pod ${netPodId}, uid : .*ECONNREFUSED`),
        error,
      );
    const [, ended] = await endedSession(netPodId, 2);
    assert.deepEqual(ended.type === 'PortForwardEnded' && ended.data.ports, [
      { port: hostPort, connections: 3, errors: 3, bytesIn: 0, bytesOut: 0 },
    ]);
  });

  it('ends a request whose connection the pod reset, with the reason on its error stream', async () => {
    const report = await forward(await forwardUrl(netPodId, [resetPort]), resetPort, 4, 1024);
    assert.equal(report.matched, 0);
    assert.equal(report.errors.length, 4, JSON.stringify(report));
    for (const error of report.errors)
      assert.ok(error.startsWith(`error forwarding port ${resetPort} to pod ${netPodId}, uid : `), error);
    const [, ended] = await endedSession(netPodId, 4);
    const port = ended.type === 'PortForwardEnded' ? ended.data.ports[0] : undefined;
    assert.equal(port?.connections, 4);
    assert.equal(port?.errors, 4, 'a reset connection is a failed request');
  });

  it('forwards to a host-network pod’s port on the host', async () => {
    const report = await forward(await forwardUrl(hostPodId, [hostPort]), hostPort, 8, 100_000);
    assert.deepEqual(report, { requests: 8, matched: 8, errors: [] });
    const [, ended] = await endedSession(hostPodId, 0);
    assert.deepEqual(ended.type === 'PortForwardEnded' && ended.data.ports, [
      { port: hostPort, connections: 8, errors: 0, bytesIn: 800_000, bytesOut: 800_000 },
    ]);
  });
});
