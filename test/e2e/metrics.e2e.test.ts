import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { freePort } from '../support/nats-server.js';
import { removeAllPods } from '../support/pods.js';

/*
 * Prometheus' view of a workload, scraped over real HTTP: the counters must say exactly
 * the work that was done (calls by method and code, sagas, events by type), the gauges
 * the state that is left, and no label may carry a container or pod id.
 */

type Samples = Map<string, number>;

/** Parses the text format into `name{label="v",...}` -> value, labels sorted so lookups need no order. */
function parse(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = (match[2] ?? '').match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
    samples.set(`${match[1]}{${labels.sort().join(',')}}`, Number(match[3]));
  }
  return samples;
}

const key = (name: string, labels: Record<string, string> = {}): string =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')}}`;

describe('Prometheus metrics after a workload', () => {
  let h: CriHarness;
  let url = '';
  const scrape = async (): Promise<{ text: string; samples: Samples; contentType: string }> => {
    const response = await fetch(url);
    assert.equal(response.status, 200);
    const text = await response.text();
    return { text, samples: parse(text), contentType: response.headers.get('content-type') ?? '' };
  };
  const value = (samples: Samples, name: string, labels: Record<string, string> = {}): number =>
    samples.get(key(name, labels)) ?? 0;
  const rpc = (method: string, code: string) => ({
    grpc_type: 'unary',
    grpc_service: 'runtime.v1.RuntimeService',
    grpc_method: method,
    grpc_code: code,
  });

  before(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/metrics`;
    h = await startCriHarness({
      prefix: 'cri-ledger-e2e-metrics-',
      env: { CRI_LEDGER_METRICS_ADDRESS: `127.0.0.1:${port}` },
    });
  });
  after(async () => {
    if (h) await removeAllPods(h).catch(() => undefined);
    await h?.cleanup();
  });

  it('counts calls, sagas and events as they happened, and shows the state left', async () => {
    const pod = {
      metadata: { name: 'metrics', uid: 'uid-metrics', namespace: 'default', attempt: 0 },
      linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    };
    const { podSandboxId } = await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod });
    const request = (name: string) => ({
      podSandboxId,
      sandboxConfig: pod,
      config: { metadata: { name, attempt: 0 }, image: { image: 'busybox' }, command: ['sleep', '3600'] },
    });
    const ids: string[] = [];
    for (const name of ['a', 'b'])
      ids.push((await h.call<{ containerId: string }>('createContainer', request(name))).containerId);
    // The same request again: served from the ledger, the same id.
    assert.equal((await h.call<{ containerId: string }>('createContainer', request('a'))).containerId, ids[0]);
    const bad = await h.call('createContainer', { ...request('c'), podSandboxId: '' }).catch((e: ServiceError) => e);
    assert.equal((bad as ServiceError).code, 3);
    for (const containerId of ids) await h.call('startContainer', { containerId });

    let { samples } = await scrape();
    assert.equal(value(samples, 'grpc_server_handled_total', rpc('CreateContainer', 'OK')), 3);
    assert.equal(value(samples, 'grpc_server_handled_total', rpc('CreateContainer', 'INVALID_ARGUMENT')), 1);
    assert.equal(value(samples, 'grpc_server_handled_total', rpc('StartContainer', 'OK')), 2);
    const createLatency = {
      grpc_type: 'unary',
      grpc_service: 'runtime.v1.RuntimeService',
      grpc_method: 'CreateContainer',
    };
    assert.equal(value(samples, 'grpc_server_handling_seconds_count', createLatency), 4);
    assert.equal(value(samples, 'grpc_server_started_total', createLatency), 4);
    assert.equal(
      value(samples, 'cri_ledger_saga_duration_seconds_count', { operation: 'CreateContainer', outcome: 'done' }),
      2,
    );
    assert.equal(
      value(samples, 'cri_ledger_saga_duration_seconds_count', { operation: 'RunPodSandbox', outcome: 'done' }),
      1,
    );
    assert.equal(value(samples, 'cri_ledger_retries_served_total', { operation: 'CreateContainer' }), 1);
    assert.equal(value(samples, 'cri_ledger_events_total', { type: 'ContainerCreated' }), 2);
    assert.equal(value(samples, 'cri_ledger_events_total', { type: 'ContainerStarted' }), 2);
    assert.equal(value(samples, 'cri_ledger_containers', { state: 'RUNNING' }), 2);
    assert.equal(value(samples, 'cri_ledger_pod_sandboxes', { state: 'READY' }), 1);
    assert.equal(value(samples, 'cri_ledger_names_held', { kind: 'container' }), 2);
    assert.equal(value(samples, 'cri_ledger_containerd_up'), 1);
    assert.equal(value(samples, 'cri_ledger_log_head_seq'), await ledgerHead(h.socket));
    assert.ok(value(samples, 'cri_ledger_log_fsync_duration_seconds_count') > 0);
    assert.ok(value(samples, 'cri_ledger_log_disk_bytes') > 0);
    assert.ok(value(samples, 'process_resident_memory_bytes') > 0);
    const steps = [...samples.keys()].filter(
      (k) => k.startsWith('cri_ledger_saga_step_duration_seconds_count{') && k.includes('operation="CreateContainer"'),
    );
    assert.ok(steps.length >= 5, `CreateContainer's steps are measured one by one: ${steps.join(' ')}`);

    for (const containerId of ids) {
      await h.call('stopContainer', { containerId, timeout: 0 });
      await h.call('removeContainer', { containerId });
    }
    ({ samples } = await scrape());
    assert.equal(value(samples, 'cri_ledger_events_total', { type: 'ContainerRemoved' }), 2);
    assert.equal(value(samples, 'cri_ledger_containers', { state: 'RUNNING' }), 0);
    assert.equal(value(samples, 'cri_ledger_names_held', { kind: 'container' }), 0);
    assert.equal(value(samples, 'grpc_server_handled_total', rpc('RemoveContainer', 'OK')), 2);
  });

  it('speaks the text format, carries no container or pod id in a label, and serves nothing else', async () => {
    const { text, contentType } = await scrape();
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    assert.doesNotMatch(text, /[0-9a-f]{64}/, 'no 64-hex id anywhere in the metrics');
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
  });
});
