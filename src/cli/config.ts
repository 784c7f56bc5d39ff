import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { z } from 'zod';
import {
  DEFAULT_STREAMING_ADDRESS,
  DEFAULT_STREAMING_IDLE_TIMEOUT_MS,
  DEFAULT_STREAMING_PORT,
  DEFAULT_STREAMING_TOKEN_TTL_MS,
} from '../adapters/streaming/streaming-options.js';
import { DEFAULT_RETENTION_INTERVAL_MS, RETENTION_OFF } from '../commands/retention-policy.js';
import { InvalidArgumentError } from '../domain/errors.js';

export const DEFAULT_ROOT = '/var/lib/cri-ledger';
export const DEFAULT_STATE_DIR = '/run/cri-ledger';
export const DEFAULT_SOCKET = '/run/cri-ledger/cri-ledger.sock';
export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';
export const DEFAULT_CONTAINERD_NAMESPACE = 'cri-ledger';
export const DEFAULT_SANDBOX_IMAGE = 'registry.k8s.io/pause:3.6';
export const DEFAULT_CNI_BIN_DIR = '/usr/lib/cni';
export const DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_REGISTRY_CONFIG_PATH = '/etc/cri-ledger/certs.d';
export const DEFAULT_NATS_STREAM = 'CRI_LEDGER';
export const DEFAULT_NATS_REPLICAS = 1;
/** Longer than kubelet's 2-minute CreateContainer retry horizon, so re-sent events dedupe. */
export const DEFAULT_NATS_DUPLICATE_WINDOW_MS = 10 * 60_000;
/** 0: keep events until the stream's other limits say otherwise. */
export const DEFAULT_NATS_MAX_AGE_MS = 0;
/** 0: no byte limit on the stream. */
export const DEFAULT_NATS_MAX_BYTES = 0;
export const DEFAULT_LOG_LEVEL = 'info';
/** containerd's CRI buffers 1,000 events per subscriber; the log can afford to wait longer. */
export const DEFAULT_CONTAINER_EVENTS_MAX_LAG = 10_000;
/**
 * How long past its caller's deadline a created container or sandbox whose id reached
 * no caller waits for a retry to claim it before it is removed: kubelet's 2-minute
 * CreateContainer deadline again, so one full retry of kubelet's fits.
 */
export const DEFAULT_UNCLAIMED_RESULT_TIMEOUT_MS = 2 * 60_000;

/** Snapshots of the projections: every 100,000 events or 10 minutes, the newest 3 kept. */
export const DEFAULT_SNAPSHOT_EVERY_EVENTS = 100_000;
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 10 * 60_000;
export const DEFAULT_SNAPSHOT_KEEP = 3;

type Kind = 'string' | 'int' | 'bool' | 'duration';

/** Every configuration key: its path, environment variable, flag and value kind. */
export const CONFIG_KEYS = [
  { key: 'root', env: 'CRI_LEDGER_ROOT', flag: 'root', kind: 'string', help: 'ledger, container and sandbox dirs' },
  { key: 'stateDir', env: 'CRI_LEDGER_STATE_DIR', flag: 'state-dir', kind: 'string', help: 'FIFOs, netns' },
  { key: 'socket', env: 'CRI_LEDGER_SOCKET', flag: 'socket', kind: 'string', help: 'CRI and ledger gRPC socket' },
  {
    key: 'containerd.address',
    env: 'CRI_LEDGER_CONTAINERD_ADDRESS',
    flag: 'containerd-address',
    kind: 'string',
    help: "containerd's socket",
  },
  {
    key: 'containerd.namespace',
    env: 'CRI_LEDGER_CONTAINERD_NAMESPACE',
    flag: 'containerd-namespace',
    kind: 'string',
    help: 'containerd namespace',
  },
  { key: 'sandboxImage', env: 'CRI_LEDGER_SANDBOX_IMAGE', flag: 'sandbox-image', kind: 'string', help: 'pause image' },
  { key: 'cni.binDir', env: 'CRI_LEDGER_CNI_BIN_DIR', flag: 'cni-bin-dir', kind: 'string', help: 'CNI plugins' },
  { key: 'cni.confDir', env: 'CRI_LEDGER_CNI_CONF_DIR', flag: 'cni-conf-dir', kind: 'string', help: 'CNI configs' },
  {
    key: 'registry.configPath',
    env: 'CRI_LEDGER_REGISTRY_CONFIG_PATH',
    flag: 'registry-config-path',
    kind: 'string',
    help: 'hosts.toml dirs',
  },
  {
    key: 'images.keepLayerBlobs',
    env: 'CRI_LEDGER_IMAGES_KEEP_LAYER_BLOBS',
    flag: 'images-keep-layer-blobs',
    kind: 'bool',
    help: "keep pulled layers' blobs in containerd's content store",
  },
  {
    key: 'restrictOomScoreAdj',
    env: 'CRI_LEDGER_RESTRICT_OOM_SCORE_ADJ',
    flag: 'restrict-oom-score-adj',
    kind: 'bool',
    help: 'clamp oom_score_adj',
  },
  {
    key: 'cgroupDriver',
    env: 'CRI_LEDGER_CGROUP_DRIVER',
    flag: 'cgroup-driver',
    kind: 'string',
    help: "cgroupfs or systemd: must match kubelet's cgroupDriver",
  },
  {
    key: 'warmUpCalls',
    env: 'CRI_LEDGER_WARM_UP_CALLS',
    flag: 'warm-up-calls',
    kind: 'int',
    help: "read-only calls the service makes to itself on a private socket at start, so kubelet's first calls find its code warm (0: none)",
  },
  {
    key: 'containerEvents.maxLag',
    env: 'CRI_LEDGER_CONTAINER_EVENTS_MAX_LAG',
    flag: 'container-events-max-lag',
    kind: 'int',
    help: 'events a GetContainerEvents subscriber may fall behind before it is ended (RESOURCE_EXHAUSTED)',
  },
  {
    key: 'tracing.otlpEndpoint',
    env: 'CRI_LEDGER_TRACING_OTLP_ENDPOINT',
    flag: 'tracing-otlp-endpoint',
    kind: 'string',
    help: 'OTLP/HTTP traces URL (e.g. http://127.0.0.1:4318/v1/traces); unset turns tracing off',
  },
  {
    key: 'metrics.address',
    env: 'CRI_LEDGER_METRICS_ADDRESS',
    flag: 'metrics-address',
    kind: 'string',
    help: 'host:port for Prometheus /metrics; unset turns metrics off',
  },
  {
    key: 'nats.url',
    env: 'CRI_LEDGER_NATS_URL',
    flag: 'nats-url',
    kind: 'string',
    help: 'NATS server(s); unset turns the relay off',
  },
  {
    key: 'nats.stream',
    env: 'CRI_LEDGER_NATS_STREAM',
    flag: 'nats-stream',
    kind: 'string',
    help: 'JetStream stream name',
  },
  {
    key: 'nats.replicas',
    env: 'CRI_LEDGER_NATS_REPLICAS',
    flag: 'nats-replicas',
    kind: 'int',
    help: 'stream replicas (1-5)',
  },
  {
    key: 'nats.duplicateWindow',
    env: 'CRI_LEDGER_NATS_DUPLICATE_WINDOW',
    flag: 'nats-duplicate-window',
    kind: 'duration',
    help: 'dedupe window, e.g. 10m',
  },
  {
    key: 'nats.maxAge',
    env: 'CRI_LEDGER_NATS_MAX_AGE',
    flag: 'nats-max-age',
    kind: 'duration',
    help: 'stream max age, 0 = unlimited',
  },
  {
    key: 'nats.maxBytes',
    env: 'CRI_LEDGER_NATS_MAX_BYTES',
    flag: 'nats-max-bytes',
    kind: 'int',
    help: 'stream size limit in bytes, 0 = unlimited',
  },
  {
    key: 'retention.maxAge',
    env: 'CRI_LEDGER_RETENTION_MAX_AGE',
    flag: 'retention-max-age',
    kind: 'duration',
    help: "remove removed containers' and sandboxes' events older than this from the local log, e.g. 7d; 0 = off",
  },
  {
    key: 'retention.maxBytes',
    env: 'CRI_LEDGER_RETENTION_MAX_BYTES',
    flag: 'retention-max-bytes',
    // A size in words ("2GiB") or bytes, read by the schema (see `retention` there).
    kind: 'string',
    help: "above this log size, remove the oldest removed containers' and sandboxes' events, e.g. 2GiB; 0 = off",
  },
  {
    key: 'retention.interval',
    env: 'CRI_LEDGER_RETENTION_INTERVAL',
    flag: 'retention-interval',
    kind: 'duration',
    help: 'how often retention checks its rules, e.g. 1m',
  },
  { key: 'node', env: 'CRI_LEDGER_NODE', flag: 'node', kind: 'string', help: 'node name (default: hostname)' },
  {
    key: 'logLevel',
    env: 'CRI_LEDGER_LOG_LEVEL',
    flag: 'log-level',
    kind: 'string',
    help: 'trace|debug|info|warn|error|fatal',
  },
  {
    key: 'unclaimedResultTimeout',
    env: 'CRI_LEDGER_UNCLAIMED_RESULT_TIMEOUT',
    flag: 'unclaimed-result-timeout',
    kind: 'duration',
    help: 'how long past its caller deadline an undelivered container or sandbox waits for a retry, e.g. 2m',
  },
  {
    key: 'streaming.address',
    env: 'CRI_LEDGER_STREAMING_ADDRESS',
    flag: 'streaming-address',
    kind: 'string',
    help: 'address of the exec, attach and port-forward streaming server',
  },
  {
    key: 'streaming.port',
    env: 'CRI_LEDGER_STREAMING_PORT',
    flag: 'streaming-port',
    kind: 'int',
    help: 'streaming server port, 0 = a free port chosen at start',
  },
  {
    key: 'streaming.tlsCertFile',
    env: 'CRI_LEDGER_STREAMING_TLS_CERT_FILE',
    flag: 'streaming-tls-cert-file',
    kind: 'string',
    help: 'PEM certificate: the streaming server speaks HTTPS (with the key file)',
  },
  {
    key: 'streaming.tlsKeyFile',
    env: 'CRI_LEDGER_STREAMING_TLS_KEY_FILE',
    flag: 'streaming-tls-key-file',
    kind: 'string',
    help: "PEM key of the streaming server's certificate",
  },
  {
    key: 'streaming.idleTimeout',
    env: 'CRI_LEDGER_STREAMING_IDLE_TIMEOUT',
    flag: 'streaming-idle-timeout',
    kind: 'duration',
    help: 'end a streaming session after this long without bytes either way, e.g. 4h',
  },
  {
    key: 'streaming.tokenTtl',
    env: 'CRI_LEDGER_STREAMING_TOKEN_TTL',
    flag: 'streaming-token-ttl',
    kind: 'duration',
    help: 'how long an unused exec, attach or port-forward URL stays valid, e.g. 1m',
  },
  {
    key: 'snapshots.enabled',
    env: 'CRI_LEDGER_SNAPSHOTS_ENABLED',
    flag: 'snapshots-enabled',
    kind: 'bool',
    help: 'write snapshots of the projections and start from the newest valid one (false: replay the whole log)',
  },
  {
    key: 'snapshots.everyEvents',
    env: 'CRI_LEDGER_SNAPSHOTS_EVERY_EVENTS',
    flag: 'snapshots-every-events',
    kind: 'int',
    help: 'write a snapshot after this many events since the last one',
  },
  {
    key: 'snapshots.interval',
    env: 'CRI_LEDGER_SNAPSHOTS_INTERVAL',
    flag: 'snapshots-interval',
    kind: 'duration',
    help: 'and after this long if any event came since the last one, e.g. 10m',
  },
  {
    key: 'snapshots.keep',
    env: 'CRI_LEDGER_SNAPSHOTS_KEEP',
    flag: 'snapshots-keep',
    kind: 'int',
    help: 'snapshots kept (the newest; older ones are the fallback if it is damaged)',
  },
] as const satisfies ReadonlyArray<{ key: string; env: string; flag: string; kind: Kind; help: string }>;

const DURATION = z.number().int().nonnegative();
/** A fresh process's first calls cost 2-4x a warm one's: this many self-calls at start take most of that. */
export const DEFAULT_WARM_UP_CALLS = 1_000;

export const ConfigSchema = z
  .object({
    root: z.string().min(1).default(DEFAULT_ROOT),
    stateDir: z.string().min(1).default(DEFAULT_STATE_DIR),
    socket: z.string().min(1).default(DEFAULT_SOCKET),
    containerd: z
      .object({
        address: z.string().min(1).default(DEFAULT_CONTAINERD_ADDRESS),
        namespace: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a containerd namespace name')
          .default(DEFAULT_CONTAINERD_NAMESPACE),
      })
      .strict()
      .default({ address: DEFAULT_CONTAINERD_ADDRESS, namespace: DEFAULT_CONTAINERD_NAMESPACE }),
    sandboxImage: z.string().min(1).default(DEFAULT_SANDBOX_IMAGE),
    cni: z
      .object({
        binDir: z.string().min(1).default(DEFAULT_CNI_BIN_DIR),
        confDir: z.string().min(1).default(DEFAULT_CNI_CONF_DIR),
      })
      .strict()
      .default({ binDir: DEFAULT_CNI_BIN_DIR, confDir: DEFAULT_CNI_CONF_DIR }),
    registry: z
      .object({ configPath: z.string().min(1).default(DEFAULT_REGISTRY_CONFIG_PATH) })
      .strict()
      .default({ configPath: DEFAULT_REGISTRY_CONFIG_PATH }),
    images: z
      .object({ keepLayerBlobs: z.boolean().default(false) })
      .strict()
      .default({ keepLayerBlobs: false }),
    restrictOomScoreAdj: z.boolean().default(false),
    nats: z
      .object({
        url: z.string().min(1).optional(),
        stream: z
          .string()
          .regex(/^[A-Za-z0-9_-]+$/, 'must be a JetStream stream name (letters, digits, _ and -)')
          .default(DEFAULT_NATS_STREAM),
        replicas: z.number().int().min(1).max(5).default(DEFAULT_NATS_REPLICAS),
        duplicateWindow: DURATION.min(1000, 'must be at least 1s').default(DEFAULT_NATS_DUPLICATE_WINDOW_MS),
        maxAge: DURATION.default(DEFAULT_NATS_MAX_AGE_MS),
        maxBytes: z.number().int().nonnegative().default(DEFAULT_NATS_MAX_BYTES),
      })
      .strict()
      .default({
        stream: DEFAULT_NATS_STREAM,
        replicas: DEFAULT_NATS_REPLICAS,
        duplicateWindow: DEFAULT_NATS_DUPLICATE_WINDOW_MS,
        maxAge: DEFAULT_NATS_MAX_AGE_MS,
        maxBytes: DEFAULT_NATS_MAX_BYTES,
      }),
    // Durations and sizes in words are read here, so a file, the environment and a flag
    // all take "7d" and "2GiB" (the other keys' words are read by readFile and convert).
    retention: z
      .object({
        maxAge: inWords(parseDuration, DURATION).default(RETENTION_OFF),
        maxBytes: inWords(
          parseSize,
          z.number({ error: 'must be a size, e.g. 800MiB, 2GB or 1073741824' }).int().nonnegative(),
        ).default(RETENTION_OFF),
        interval: inWords(parseDuration, DURATION.min(100, 'must be at least 100ms')).default(
          DEFAULT_RETENTION_INTERVAL_MS,
        ),
      })
      .strict()
      .default({ maxAge: RETENTION_OFF, maxBytes: RETENTION_OFF, interval: DEFAULT_RETENTION_INTERVAL_MS }),
    node: z
      .string()
      .regex(/^[^\s.*>]+$/, 'must be one NATS subject token (no spaces, dots, * or >)')
      .default(() => nodeName()),
    cgroupDriver: z.enum(['cgroupfs', 'systemd']).default('cgroupfs'),
    warmUpCalls: z.number().int().min(0).max(100_000).default(DEFAULT_WARM_UP_CALLS),
    containerEvents: z
      .object({ maxLag: z.number().int().min(1).default(DEFAULT_CONTAINER_EVENTS_MAX_LAG) })
      .strict()
      .default({ maxLag: DEFAULT_CONTAINER_EVENTS_MAX_LAG }),
    tracing: z
      .object({ otlpEndpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional() })
      .strict()
      .default({}),
    metrics: z
      .object({
        address: z
          .string()
          .regex(/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9101')
          .optional(),
      })
      .strict()
      .default({}),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default(DEFAULT_LOG_LEVEL),
    unclaimedResultTimeout: DURATION.min(100, 'must be at least 100ms').default(DEFAULT_UNCLAIMED_RESULT_TIMEOUT_MS),
    streaming: z
      .object({
        address: z.string().min(1).default(DEFAULT_STREAMING_ADDRESS),
        port: z.number().int().min(0).max(65535).default(DEFAULT_STREAMING_PORT),
        tlsCertFile: z.string().min(1).optional(),
        tlsKeyFile: z.string().min(1).optional(),
        idleTimeout: DURATION.min(1000, 'must be at least 1s').default(DEFAULT_STREAMING_IDLE_TIMEOUT_MS),
        tokenTtl: DURATION.min(1000, 'must be at least 1s').default(DEFAULT_STREAMING_TOKEN_TTL_MS),
      })
      .strict()
      .refine((s) => (s.tlsCertFile === undefined) === (s.tlsKeyFile === undefined), {
        message: 'streaming.tlsCertFile and streaming.tlsKeyFile go together: set both or neither',
        path: ['tlsCertFile'],
      })
      .default({
        address: DEFAULT_STREAMING_ADDRESS,
        port: DEFAULT_STREAMING_PORT,
        idleTimeout: DEFAULT_STREAMING_IDLE_TIMEOUT_MS,
        tokenTtl: DEFAULT_STREAMING_TOKEN_TTL_MS,
      }),
    snapshots: z
      .object({
        enabled: z.boolean().default(true),
        everyEvents: z.number().int().min(1).default(DEFAULT_SNAPSHOT_EVERY_EVENTS),
        interval: DURATION.min(1000, 'must be at least 1s').default(DEFAULT_SNAPSHOT_INTERVAL_MS),
        keep: z.number().int().min(1).max(100).default(DEFAULT_SNAPSHOT_KEEP),
      })
      .strict()
      .default({
        enabled: true,
        everyEvents: DEFAULT_SNAPSHOT_EVERY_EVENTS,
        interval: DEFAULT_SNAPSHOT_INTERVAL_MS,
        keep: DEFAULT_SNAPSHOT_KEEP,
      }),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;

/** The hostname up to its first dot: a subject token, as kubelet's node name usually is. */
function nodeName(): string {
  return hostname().split('.')[0] || 'localhost';
}

/** "10m", "90s", "1h30m", "250ms", or a number of milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/.exec(rest);
    if (!m) throw new Error(`"${value}" is not a duration (e.g. 500ms, 90s, 10m, 1h30m)`);
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/** A number schema that also takes words ("7d", "2GiB") `parse` reads; words it cannot read fail the schema. */
function inWords(parse: (text: string) => number, schema: z.ZodNumber) {
  return z.preprocess((value) => {
    if (typeof value !== 'string') return value;
    try {
      return parse(value);
    } catch {
      return value;
    }
  }, schema);
}

/** "512MiB", "2GB", "1.5GiB", "800k", or a number of bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not a size (e.g. 800MiB, 2GB, 1073741824)`);
  const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  const base = m[3] ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** power);
}

function convert(kind: Kind, raw: string): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'int':
      if (!/^-?\d+$/.test(raw.trim())) throw new Error(`"${raw}" is not a whole number`);
      return Number(raw);
    case 'bool':
      if (/^(true|1|yes)$/i.test(raw)) return true;
      if (/^(false|0|no)$/i.test(raw)) return false;
      throw new Error(`"${raw}" is not true or false`);
    case 'duration':
      return parseDuration(raw);
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    node = (typeof next === 'object' && next !== null ? next : (node[part] = {})) as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}

/**
 * The YAML parser, loaded only for a YAML file: every start (and every CLI command)
 * loads this module, and `yaml` costs ~100 ms of it, a tenth of a restart's budget.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text);
}

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new InvalidArgumentError('--config', `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  let parsed: unknown;
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (cause) {
    throw new InvalidArgumentError(
      '--config',
      `${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(cause as Error).message}`,
      { cause },
    );
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new InvalidArgumentError('--config', `${path} must hold an object`);
  // Durations may be written as "10m" in a file too.
  const obj = parsed as Record<string, unknown>;
  if (typeof obj.unclaimedResultTimeout === 'string') {
    try {
      obj.unclaimedResultTimeout = parseDuration(obj.unclaimedResultTimeout);
    } catch (cause) {
      throw new InvalidArgumentError('unclaimedResultTimeout', `in ${path}: ${(cause as Error).message}`);
    }
  }
  const durations: Array<[string, string[]]> = [
    ['nats', ['duplicateWindow', 'maxAge']],
    ['streaming', ['idleTimeout', 'tokenTtl']],
    ['snapshots', ['interval']],
  ];
  for (const [section, keys] of durations) {
    const values = obj[section] as Record<string, unknown> | undefined;
    for (const k of keys) {
      if (values && typeof values[k] === 'string') {
        try {
          values[k] = parseDuration(values[k] as string);
        } catch (cause) {
          throw new InvalidArgumentError(`${section}.${k}`, `in ${path}: ${(cause as Error).message}`);
        }
      }
    }
  }
  return obj;
}

export interface ConfigSources {
  /** Path given with --config. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by flag name (`nats-url`), as strings. */
  flags?: Record<string, string | boolean | undefined>;
  /** Keys whose environment variable and flag are not configuration here (a command reads them itself). */
  skip?: readonly string[];
}

/**
 * Builds the configuration: the file, then environment variables, then flags, each
 * overriding the one before. Throws InvalidArgumentError naming the key and where its
 * bad value came from.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  return loadConfigWithOrigins(sources).config;
}

/** Where each key's value came from: `default`, `in FILE`, `from ENV_VAR` or `from --flag`. */
export type ConfigOrigins = ReadonlyMap<string, string>;

/** loadConfig, and where each key's value came from (a command may act on "set" versus "default"). */
export function loadConfigWithOrigins(sources: ConfigSources = {}): { config: Config; origins: ConfigOrigins } {
  const merged: Record<string, unknown> = sources.file ? readFile(sources.file) : {};
  const origin = new Map<string, string>();
  for (const def of CONFIG_KEYS) {
    const inFile = def.key
      .split('.')
      .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], merged);
    origin.set(def.key, sources.file && inFile !== undefined ? `in ${sources.file}` : 'default');
  }
  const layers: Array<[string, (d: (typeof CONFIG_KEYS)[number]) => string | boolean | undefined]> = [
    ['env', (d) => sources.env?.[d.env]],
    ['flag', (d) => sources.flags?.[d.flag]],
  ];
  for (const [layer, valueOf] of layers) {
    for (const def of CONFIG_KEYS) {
      if (sources.skip?.includes(def.key)) continue;
      const raw = valueOf(def);
      if (raw === undefined || raw === '') continue;
      const where = layer === 'env' ? `from ${def.env}` : `from --${def.flag}`;
      try {
        setPath(merged, def.key, typeof raw === 'boolean' ? raw : convert(def.kind, raw));
      } catch (cause) {
        throw new InvalidArgumentError(def.key, `${(cause as Error).message} (${where})`);
      }
      origin.set(def.key, where);
    }
  }
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.join('.') || '(root)';
    const unknown = issue.code === 'unrecognized_keys' ? ` ${issue.keys.join(', ')}` : '';
    const where = origin.get(key);
    throw new InvalidArgumentError(key, `${issue.message}${unknown}${where ? ` (${where})` : ''}`);
  }
  return { config: result.data, origins: origin };
}

/** Where the service's own files live, derived from the configured dirs. */
export function ledgerDir(config: Config): string {
  return `${config.root}/ledger`;
}
