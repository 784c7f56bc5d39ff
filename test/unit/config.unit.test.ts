import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  DEFAULT_NATS_DUPLICATE_WINDOW_MS,
  DEFAULT_UNCLAIMED_RESULT_TIMEOUT_MS,
  loadConfig,
  parseDuration,
} from '../../src/cli/config.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('configuration', () => {
  it('has the documented defaults, with the relay off', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.root, '/var/lib/cri-ledger');
    assert.equal(config.stateDir, '/run/cri-ledger');
    assert.equal(config.socket, '/run/cri-ledger/cri-ledger.sock');
    assert.equal(config.containerd.namespace, 'cri-ledger');
    assert.equal(config.nats.url, undefined);
    assert.equal(config.nats.stream, 'CRI_LEDGER');
    assert.ok(config.nats.duplicateWindow > 2 * 60_000, 'dedupe window must outlast kubelet retries');
    assert.equal(config.logLevel, 'info');
    assert.equal(config.images.keepLayerBlobs, false);
    assert.ok(config.node.length > 0 && !config.node.includes('.'));
  });

  it('keeps layer blobs when asked by file, environment or flag', () => {
    assert.equal(
      loadConfig({ file: file('k.yaml', 'images:\n  keepLayerBlobs: true\n'), env: {} }).images.keepLayerBlobs,
      true,
    );
    assert.equal(loadConfig({ env: { CRI_LEDGER_IMAGES_KEEP_LAYER_BLOBS: 'true' } }).images.keepLayerBlobs, true);
    assert.equal(
      loadConfig({ env: { CRI_LEDGER_IMAGES_KEEP_LAYER_BLOBS: 'true' }, flags: { 'images-keep-layer-blobs': 'false' } })
        .images.keepLayerBlobs,
      false,
    );
  });

  it('lets flags override the environment, which overrides the file', () => {
    const yaml = file(
      'c.yaml',
      'root: /from/file\nstateDir: /state/file\nnats:\n  url: nats://file:4222\n  maxAge: 7d\nlogLevel: debug\n',
    );
    const config = loadConfig({
      file: yaml,
      env: {
        CRI_LEDGER_ROOT: '/from/env',
        CRI_LEDGER_NATS_URL: 'nats://env:4222',
        CRI_LEDGER_NATS_DUPLICATE_WINDOW: '15m',
      },
      flags: { root: '/from/flag' },
    });
    assert.equal(config.root, '/from/flag');
    assert.equal(config.stateDir, '/state/file');
    assert.equal(config.nats.url, 'nats://env:4222');
    assert.equal(config.nats.duplicateWindow, 15 * 60_000);
    assert.equal(config.nats.maxAge, 7 * 86_400_000);
    assert.equal(config.logLevel, 'debug');
  });

  it('reads JSON files', () => {
    const json = file('c.json', JSON.stringify({ containerd: { namespace: 'ns1' }, nats: { replicas: 3 } }));
    const config = loadConfig({ file: json, env: {} });
    assert.equal(config.containerd.namespace, 'ns1');
    assert.equal(config.containerd.address, '/run/containerd/containerd.sock');
    assert.equal(config.nats.replicas, 3);
    assert.equal(config.nats.duplicateWindow, DEFAULT_NATS_DUPLICATE_WINDOW_MS);
  });

  const rejects = (sources: Parameters<typeof loadConfig>[0], field: string, pattern: RegExp) => {
    assert.throws(
      () => loadConfig(sources),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError, String(error));
        assert.equal(error.field, field);
        assert.match(error.message, pattern);
        return true;
      },
    );
  };

  it('names the key and its source when a value is bad', () => {
    rejects({ env: { CRI_LEDGER_NATS_REPLICAS: '9' } }, 'nats.replicas', /CRI_LEDGER_NATS_REPLICAS/);
    rejects({ env: { CRI_LEDGER_NATS_REPLICAS: 'three' } }, 'nats.replicas', /not a whole number/);
    rejects({ env: {}, flags: { 'log-level': 'loud' } }, 'logLevel', /--log-level/);
    rejects({ env: {}, flags: { 'nats-duplicate-window': 'soon' } }, 'nats.duplicateWindow', /not a duration/);
    rejects({ env: { CRI_LEDGER_NODE: 'node.example.com' } }, 'node', /subject token/);
    rejects({ env: { CRI_LEDGER_RESTRICT_OOM_SCORE_ADJ: 'maybe' } }, 'restrictOomScoreAdj', /true or false/);
  });

  it('refuses unknown keys and unreadable files, naming them', () => {
    rejects({ file: file('typo.yaml', 'nats:\n  ur1: nats://x\n'), env: {} }, 'nats', /ur1/);
    rejects({ file: file('bad.json', '{ nope'), env: {} }, '--config', /not valid JSON/);
    rejects({ file: join(dir, 'missing.yaml'), env: {} }, '--config', /cannot read/);
  });

  it('reads the unclaimed-result timeout from a file, the environment or a flag, 2 minutes by default', () => {
    assert.equal(loadConfig({ env: {} }).unclaimedResultTimeout, DEFAULT_UNCLAIMED_RESULT_TIMEOUT_MS);
    assert.equal(DEFAULT_UNCLAIMED_RESULT_TIMEOUT_MS, 120_000);
    assert.equal(
      loadConfig({ file: file('u.yaml', 'unclaimedResultTimeout: 5m\n'), env: {} }).unclaimedResultTimeout,
      300_000,
    );
    assert.equal(loadConfig({ env: { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '90s' } }).unclaimedResultTimeout, 90_000);
    assert.equal(
      loadConfig({ env: { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '90s' }, flags: { 'unclaimed-result-timeout': '3s' } })
        .unclaimedResultTimeout,
      3_000,
    );
    rejects({ env: { CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT: '10ms' } }, 'unclaimedResultTimeout', /at least 100ms/);
    rejects(
      { file: file('u2.yaml', 'unclaimedResultTimeout: later\n'), env: {} },
      'unclaimedResultTimeout',
      /not a duration/,
    );
  });

  it('serves streaming on loopback, a free port, plain HTTP, 4 h idle and 1 min tokens by default', () => {
    const { streaming } = loadConfig({ env: {} });
    assert.deepEqual(streaming, { address: '127.0.0.1', port: 0, idleTimeout: 4 * 3_600_000, tokenTtl: 60_000 });
  });

  it('reads the streaming keys from a file, the environment and flags', () => {
    const fromFile = loadConfig({
      file: file('s.yaml', 'streaming:\n  address: 0.0.0.0\n  port: 10010\n  idleTimeout: 30m\n  tokenTtl: 90s\n'),
      env: {},
    }).streaming;
    assert.deepEqual(fromFile, { address: '0.0.0.0', port: 10010, idleTimeout: 1_800_000, tokenTtl: 90_000 });
    const layered = loadConfig({
      env: {
        CRI_LEDGER_STREAMING_PORT: '10011',
        CRI_LEDGER_STREAMING_TLS_CERT_FILE: '/etc/cert.pem',
        CRI_LEDGER_STREAMING_TLS_KEY_FILE: '/etc/key.pem',
      },
      flags: { 'streaming-port': '10012', 'streaming-idle-timeout': '1h' },
    }).streaming;
    assert.equal(layered.port, 10012);
    assert.equal(layered.idleTimeout, 3_600_000);
    assert.equal(layered.tlsCertFile, '/etc/cert.pem');
    assert.equal(layered.tlsKeyFile, '/etc/key.pem');
  });

  it('refuses a streaming certificate without its key, a port past 65535 and a sub-second token TTL', () => {
    rejects(
      { env: { CRI_LEDGER_STREAMING_TLS_CERT_FILE: '/etc/cert.pem' } },
      'streaming.tlsCertFile',
      /both or neither/,
    );
    rejects({ env: { CRI_LEDGER_STREAMING_PORT: '70000' } }, 'streaming.port', /65535/);
    rejects({ flags: { 'streaming-token-ttl': '10ms' } }, 'streaming.tokenTtl', /at least 1s/);
  });

  it('snapshots the projections every 100,000 events or 10 minutes, keeping 3, by default', () => {
    assert.deepEqual(loadConfig({ env: {} }).snapshots, {
      enabled: true,
      everyEvents: 100_000,
      interval: 600_000,
      keep: 3,
    });
  });

  it('reads the snapshot keys from a file, the environment and flags, and refuses nonsense', () => {
    const fromFile = loadConfig({
      file: file('snap.yaml', 'snapshots:\n  everyEvents: 5000\n  interval: 90s\n  keep: 2\n'),
      env: {},
    }).snapshots;
    assert.deepEqual(fromFile, { enabled: true, everyEvents: 5000, interval: 90_000, keep: 2 });
    const layered = loadConfig({
      env: { CRI_LEDGER_SNAPSHOTS_ENABLED: 'false', CRI_LEDGER_SNAPSHOTS_INTERVAL: '1h' },
      flags: { 'snapshots-every-events': '20000', 'snapshots-keep': '5' },
    }).snapshots;
    assert.deepEqual(layered, { enabled: false, everyEvents: 20_000, interval: 3_600_000, keep: 5 });
    rejects({ env: { CRI_LEDGER_SNAPSHOTS_KEEP: '0' } }, 'snapshots.keep', />=1/);
    rejects({ flags: { 'snapshots-every-events': '0' } }, 'snapshots.everyEvents', />=1/);
    rejects({ flags: { 'snapshots-interval': '10ms' } }, 'snapshots.interval', /at least 1s/);
  });

  it('parses durations in the forms operators write', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('90'), 90);
    assert.throws(() => parseDuration('ten minutes'), /not a duration/);
  });
});
