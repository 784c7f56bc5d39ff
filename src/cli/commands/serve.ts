import type { Command } from 'commander';
import type { NatsRelay } from '../../adapters/bus/nats-relay.js';
import type { BatchStats, EventLogOptions } from '../../adapters/eventlog/base-event-log.js';
import { afterCommit, afterCommitOne } from '../../adapters/eventlog/after-commit.js';
import type { LevelDbEventLog } from '../../adapters/eventlog/leveldb-event-log.js';
import type { MetricsServer } from '../../adapters/metrics/metrics-server.js';
import type { CallActivity } from '../../adapters/grpc/call-interceptor.js';
import type { SocketServer } from '../../adapters/grpc/socket-server.js';
import type { SnapshotWriter } from '../../adapters/snapshots/snapshot-writer.js';
import { createLogger, type Logger } from '../../adapters/logging/logger.js';
import { withBoundedHeapGrowth } from '../../adapters/memory/heap-growth.js';
import { systemdNotify } from '../../adapters/native/notify.js';
import type { SessionHandlers, StreamingServer } from '../../adapters/streaming/contracts.js';
import type { SessionPayload, StreamingSessions } from '../../commands/ports.js';
import { CriLedgerError, LedgerLockedError, RuntimeUnavailableError } from '../../domain/errors.js';
import type { LogRetention } from '../../adapters/eventlog/log-retention.js';
import { ledgerDir, type Config } from '../config.js';
import { retentionPolicy, startRetention } from '../retention.js';
import type { CriServices } from '../cri-services.js';
import { configFrom, withConfigOptions } from '../options.js';
import { note, print } from './support/output.js';

/** How long in-flight calls may run on after SIGTERM before they are cut off. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;
/** After a clean shutdown, exit even if a library still holds a handle open. */
const EXIT_AFTER_SHUTDOWN_MS = 2_000;

export function registerServe(program: Command): void {
  const command = program
    .command('serve')
    .description('run the cri-ledger service on its unix socket (until SIGTERM or SIGINT)')
    .option('--check-config', 'validate the configuration (file, environment, flags), print it, and exit');
  withConfigOptions(command).action((options: { checkConfig?: boolean }, cmd: Command) => {
    const config = configFrom(cmd);
    if (!options.checkConfig) return serve(config);
    // For provisioning pipelines: a bad value has already failed above, naming the key.
    print(JSON.stringify(config, null, 2));
    note('cri-ledger: the configuration is valid');
  });
}

interface StopRequest {
  reason: string;
  code: number;
}

/**
 * The service's composition root. Order matters:
 *  1. open the log: its LOCK is what makes this the only instance for the root, so a
 *     second instance fails here, before it could touch the first one's socket;
 *  2. rebuild the projections (a record that does not decode stops startup, with its seq);
 *  3. start the relay when a NATS URL is configured (a stream that does not match the
 *     config is fatal: the operator reconciles it);
 *  4. bind the socket, last, so a client never reaches a half-started service.
 * SIGTERM/SIGINT undo it in reverse: stop calls, stop the relay (it persists its cursor),
 * close the log, exit 0.
 */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, { node: config.node });
  const dir = ledgerDir(config);
  // Loaded here, not at the top: every other command shares this module graph, and
  // none of them needs the relay or the gRPC server.
  // Metrics, when configured, are made first: the log reports each batch to them.
  const metrics = config.metrics.address ? await createMetrics() : undefined;
  // Tracing too: the log stamps each event with the trace id of the call that caused it.
  const tracing = config.tracing.otlpEndpoint ? await createTracing(config, logger) : undefined;
  const [{ Ledger }, snapshotModules, log] = await Promise.all([
    import('../../commands/ledger.js'),
    config.snapshots.enabled
      ? Promise.all([
          import('../../adapters/snapshots/file-snapshot-store.js'),
          import('../../adapters/snapshots/snapshot-writer.js'),
        ])
      : undefined,
    openLog(dir, config.node, {
      ...(metrics ? { onBatch: afterCommitOne((stats: BatchStats) => metrics.ledger.onBatch(stats)) } : {}),
      ...(tracing ? { traceId: (correlationId: string) => tracing.traceIdFor(correlationId) } : {}),
    }),
  ]);

  let requestStop!: (request: StopRequest) => void;
  const stopRequested = new Promise<StopRequest>((resolve) => (requestStop = resolve));
  // Listen for signals from here on: a SIGTERM that lands while the projections load is
  // honoured once startup is done, through the same clean shutdown (socket unlinked, log
  // closed), instead of Node's default of dying with a stale socket file left behind.
  const onSignal = (signal: NodeJS.Signals): void => requestStop({ reason: signal, code: 0 });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let relay: NatsRelay | undefined;
  let retention: LogRetention | undefined;
  let metricsServer: MetricsServer | undefined;
  let server: SocketServer | undefined;
  let streaming: StreamingServer<SessionPayload> | undefined;
  let cri: CriServices | undefined;
  // The real socket's calls, so the warm-up goes in the gaps between them.
  let activity: CallActivity | undefined;
  let snapshotWriter: SnapshotWriter | undefined;
  // What serving needs is loaded while the projections are: the rebuild waits on
  // LevelDB's reads, and loading these modules (and parsing the CRI protos) fills those
  // waits. The NATS client only when a relay is configured.
  const modules = Promise.all([
    import('../../adapters/grpc/socket-server.js'),
    import('../../adapters/ledger-api/ledger-service.js'),
    import('../cri-services.js'),
    import('../../adapters/streaming/streaming-server.js'),
    config.nats.url
      ? Promise.all([import('../../adapters/bus/nats-relay.js'), import('../../adapters/bus/nats-stream-config.js')])
      : undefined,
  ]);
  modules.catch(() => undefined); // awaited below; a failure is handled there
  let StreamConfigMismatch: (new (...args: never[]) => Error) | undefined;
  try {
    logger.info({ dir, head: log.head() }, 'loading projections');
    const snapshotStore = snapshotModules
      ? new snapshotModules[0].FileSnapshotStore(snapshotModules[0].snapshotDir(dir))
      : undefined;
    const loadStarted = performance.now();
    const ledger = await withBoundedHeapGrowth(() =>
      Ledger.load(log, (applied, head) => logger.info({ applied, head }, 'loading projections'), {
        ...(snapshotStore ? { snapshots: snapshotStore } : {}),
        // A bad snapshot costs time, never correctness: the next older one, or the log, is used.
        onSnapshotSkipped: (snapshot, reason) =>
          logger.warn({ snapshot: snapshot.location, reason }, 'skipping a snapshot of the projections'),
      }),
    );
    logger.info(
      {
        snapshot: ledger.loadedFrom.snapshot?.location ?? null,
        snapshotSeq: ledger.loadedFrom.snapshot?.seq ?? 0,
        replayed: ledger.loadedFrom.replayed,
        head: log.head(),
        ms: Math.round(performance.now() - loadStarted),
      },
      'projections loaded',
    );
    if (tracing) log.onCommit(afterCommit((events) => tracing.onCommit(events)));
    const [
      { startSocketServer, CallActivity },
      { createLedgerService },
      { createCriServices },
      { startStreamingServer },
      nats,
    ] = await modules;
    StreamConfigMismatch = nats?.[1].StreamConfigMismatchError;
    if (config.nats.url && nats) {
      relay = await nats[0].NatsRelay.start({
        log,
        servers: config.nats.url,
        stream: config.nats.stream,
        node: config.node,
        replicas: config.nats.replicas,
        duplicateWindowMs: config.nats.duplicateWindow,
        maxAgeMs: config.nats.maxAge,
        maxBytes: config.nats.maxBytes,
        logger,
        // The stream changed under a running relay: same verdict as at startup.
        onFatal: (error) => {
          logger.fatal({ err: error }, 'the NATS stream no longer matches the configuration; stopping');
          requestStop({ reason: 'relay', code: 1 });
        },
      });
    }
    // Retention, when configured, prunes ended streams in the background (src/cli/retention.ts).
    retention = startRetention(
      config,
      log,
      ledger,
      logger,
      // The oldest snapshot a start may load: what ended after it must stay (decision 48).
      snapshotStore ? async () => (await snapshotStore.list()).at(-1)?.seq : undefined,
    );
    const service = createLedgerService({
      ledger,
      pruned: log,
      retention: retentionPolicy(config),
      node: config.node,
      ...(relay ? { relay } : {}),
      natsStream: config.nats.stream,
      containerd: { address: config.containerd.address, namespace: config.containerd.namespace },
      ...(snapshotStore ? { snapshotDir: snapshotStore.dir } : {}),
    });
    // Every CRI RPC is registered: the ones not implemented yet answer UNIMPLEMENTED
    // naming the RPC, so kubelet and crictl never see "unknown service".
    // Exec, Attach and PortForward hand out URLs on the streaming server, which starts once
    // the handlers it runs sessions with exist (they are the CRI services' adapters).
    let streamingServer: StreamingServer<SessionPayload> | undefined;
    const urls: StreamingSessions = {
      register: (kind, payload) => {
        if (!streamingServer) throw new RuntimeUnavailableError('the streaming server is not listening yet');
        return streamingServer.register(kind, payload);
      },
    };
    const criServices = createCriServices(config, ledger, logger, {
      server: urls,
      ...(metrics ? { sagaObserver: metrics.ledger.saga } : {}),
    });
    cri = criServices;
    streamingServer = await startStreaming(startStreamingServer, config, criServices.sessionHandlers, logger);
    streaming = streamingServer;
    if (metrics && config.metrics.address) {
      metrics.ledger.attach({
        ledger,
        ledgerDir: dir,
        ...(relay ? { relay } : {}),
        containerdUp: () => criServices.containerdUp(),
      });
      metricsServer = await metrics.serve(config.metrics.address, logger);
    }
    if (config.warmUpCalls > 0) activity = new CallActivity();
    server = await startSocketServer({
      socketPath: config.socket,
      services: [service, ...criServices.services],
      logger,
      observers: [
        ...(metrics ? [metrics.rpc] : []),
        ...(tracing ? [tracing.observer] : []),
        ...(activity ? [activity] : []),
      ],
    });
    criServices.start();
    if (snapshotModules && snapshotStore) {
      snapshotWriter = new snapshotModules[1].SnapshotWriter({
        ledger,
        store: snapshotStore,
        everyEvents: config.snapshots.everyEvents,
        intervalMs: config.snapshots.interval,
        keep: config.snapshots.keep,
        logger,
      });
      snapshotWriter.start();
    }
  } catch (error) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await snapshotWriter?.stop({ final: false });
    cri?.close();
    await streaming?.close().catch(() => undefined);
    await metricsServer?.close();
    await retention?.stop();
    await relay?.stop().catch(() => undefined);
    await log.close();
    if (StreamConfigMismatch && error instanceof StreamConfigMismatch) {
      logger.fatal({ err: error }, 'the NATS stream does not match the configuration; fix one of them');
      process.exitCode = 1;
      return;
    }
    throw error;
  }

  // `node` is on every line already (the logger's base).
  logger.info({ socket: server.socketPath, head: log.head(), relay: relay ? 'on' : 'off' }, 'ready');
  // Under systemd (Type=notify): the unit is started now, not when the process began.
  notifySystemd(logger, `READY=1\nSTATUS=serving on ${server.socketPath}\nMAINPID=${process.pid}`);

  const warmUpStop = new AbortController();
  const warming = config.warmUpCalls > 0 ? startWarmUp(config, cri, logger, warmUpStop.signal, activity) : undefined;

  const { reason, code } = await stopRequested;
  notifySystemd(logger, `STOPPING=1\nSTATUS=stopping (${reason})`);
  warmUpStop.abort();
  await warming;
  // A second signal while shutting down means "now".
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  const force = (): never => {
    logger.warn('second signal during shutdown; exiting at once');
    process.exit(1);
  };
  process.once('SIGTERM', force);
  process.once('SIGINT', force);

  await retention?.stop();
  process.exitCode = await shutdown({
    reason,
    code,
    server,
    relay,
    log,
    logger,
    ...(cri ? { cri } : {}),
    ...(streaming ? { streaming } : {}),
    ...(snapshotWriter ? { snapshotWriter } : {}),
  });
  await metricsServer?.close();
  await tracing?.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'flushing traces failed'));
  cri?.close();
  setTimeout(() => process.exit(), EXIT_AFTER_SHUTDOWN_MS).unref();
}

/**
 * The warm-up (warm-up.ts) in the background, after the socket serves. Its failure is
 * only logged: the service serves as it would have without it.
 */
async function startWarmUp(
  config: Config,
  cri: CriServices | undefined,
  logger: Logger,
  signal: AbortSignal,
  activity: CallActivity | undefined,
): Promise<void> {
  if (!cri) return;
  try {
    const [{ warmUp }, { imageServiceV1, runtimeServiceV1 }] = await Promise.all([
      import('../../adapters/grpc/warm-up.js'),
      import('../../adapters/cri/cri-definition.js'),
    ]);
    const unknown = 'warm-up-0000000000000000000000000000000000000000000000000000000000';
    const result = await warmUp({
      services: cri.services,
      calls: [
        { service: runtimeServiceV1, method: 'Version', request: { version: 'v1' } },
        { service: runtimeServiceV1, method: 'Status', request: { verbose: false } },
        { service: runtimeServiceV1, method: 'ListPodSandbox', request: {} },
        { service: runtimeServiceV1, method: 'ListContainers', request: {} },
        { service: runtimeServiceV1, method: 'PodSandboxStatus', request: { podSandboxId: unknown } },
        { service: runtimeServiceV1, method: 'ContainerStatus', request: { containerId: unknown } },
        { service: imageServiceV1, method: 'ImageStatus', request: { image: { image: 'warm-up.invalid/none:0' } } },
      ],
      total: config.warmUpCalls,
      stateDir: config.stateDir,
      logger,
      signal,
      ...(activity ? { activity } : {}),
    });
    logger.debug(result, 'warmed up');
  } catch (error) {
    logger.warn({ err: error }, 'the warm-up failed; serving without it');
  }
}

/** Opens the log; a held lock means another service runs on this root. */
function notifySystemd(logger: Logger, state: string): void {
  try {
    if (systemdNotify(state)) logger.debug({ state }, 'told systemd');
  } catch (error) {
    logger.warn({ err: error }, 'telling systemd (NOTIFY_SOCKET) failed');
  }
}

/** The streaming server for Exec, Attach and PortForward, as the streaming.* keys configure it. */
async function startStreaming(
  startStreamingServer: typeof import('../../adapters/streaming/streaming-server.js').startStreamingServer,
  config: Config,
  handlers: SessionHandlers<SessionPayload>,
  logger: Logger,
): Promise<StreamingServer<SessionPayload>> {
  const s = config.streaming;
  const server = await startStreamingServer<SessionPayload>({
    address: s.address,
    port: s.port,
    ...(s.tlsCertFile && s.tlsKeyFile ? { tls: { certFile: s.tlsCertFile, keyFile: s.tlsKeyFile } } : {}),
    idleTimeoutMs: s.idleTimeout,
    tokenTtlMs: s.tokenTtl,
    handlers,
    logger,
    streamsOf: (p) =>
      p.kind === 'portforward'
        ? { stdin: false, stdout: false, stderr: false, tty: false }
        : {
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            tty: p.tty,
            ...(p.kind === 'exec' ? { command: p.cmd } : {}),
          },
    portsOf: (p) => (p.kind === 'portforward' ? p.ports : []),
  });
  logger.info({ address: server.address }, 'streaming server listening (exec, attach, port-forward)');
  return server;
}

/** The metrics, loaded only when an address is configured (prom-client is not free to load). */
async function createMetrics() {
  const [{ Registry }, { rpcMetricsObserver }, { ledgerMetrics }, { startMetricsServer }] = await Promise.all([
    import('prom-client'),
    import('../../adapters/metrics/rpc-metrics.js'),
    import('../../adapters/metrics/ledger-metrics.js'),
    import('../../adapters/metrics/metrics-server.js'),
  ]);
  const registry = new Registry();
  return {
    rpc: rpcMetricsObserver(registry),
    ledger: ledgerMetrics(registry),
    serve: (address: string, logger: Logger) => startMetricsServer(registry, address, logger),
  };
}

/** Tracing, loaded only when an OTLP endpoint is configured. */
async function createTracing(config: Config, logger: Logger) {
  const [{ startTracing }, { packageVersion }] = await Promise.all([
    import('../../adapters/tracing/tracing.js'),
    import('../cri-services.js'),
  ]);
  let lastExportWarning = 0;
  return startTracing({
    endpoint: config.tracing.otlpEndpoint!,
    node: config.node,
    version: packageVersion(),
    onExportProblem: ({ dropped, error }) => {
      // A collector that is down fails every export: one warning a minute says so.
      if (!dropped && Date.now() - lastExportWarning < 60_000) return;
      lastExportWarning = Date.now();
      logger.warn(
        { endpoint: config.tracing.otlpEndpoint, ...(dropped ? { dropped } : {}), ...(error ? { err: error } : {}) },
        dropped ? 'spans dropped: the OTLP export cannot keep up' : 'exporting spans failed',
      );
    },
  });
}

async function openLog(
  dir: string,
  node: string,
  hooks: Pick<EventLogOptions, 'onBatch' | 'traceId'> = {},
): Promise<LevelDbEventLog> {
  const [{ LevelDbEventLog }, { LedgerDiskFullError }] = await Promise.all([
    import('../../adapters/eventlog/leveldb-event-log.js'),
    import('../../adapters/eventlog/storage-errors.js'),
  ]);
  try {
    return await LevelDbEventLog.open({ dir, node, ...hooks });
  } catch (error) {
    if (error instanceof LedgerDiskFullError) {
      // Opening writes (LevelDB turns its write-ahead log into a table): refuse to start
      // rather than serve a log that cannot record anything.
      throw new CriLedgerError(
        `cannot start: the disk holding the ledger at ${dir} is full (no space left on device); free space there, then start again`,
        { cause: error },
      );
    }
    if (!(error instanceof LedgerLockedError)) throw error;
    throw new CriLedgerError(
      `the ledger at ${dir} is held by another cri-ledger process: a service is already running on this root`,
      { cause: error },
    );
  }
}

async function shutdown(
  o: StopRequest & {
    server: SocketServer;
    relay: NatsRelay | undefined;
    log: LevelDbEventLog;
    logger: Logger;
    cri?: CriServices;
    streaming?: StreamingServer<SessionPayload>;
    snapshotWriter?: SnapshotWriter;
  },
): Promise<number> {
  o.logger.info({ reason: o.reason }, 'shutting down');
  let code = o.code;
  const step = async (what: string, action: () => Promise<void>): Promise<void> => {
    try {
      await action();
    } catch (error) {
      o.logger.error({ err: error }, `shutdown: ${what} failed`);
      code = 1;
    }
  };
  await step('closing the socket', () => o.server.close(DEFAULT_SHUTDOWN_GRACE_MS));
  // Open exec, attach and port-forward sessions end (recorded as `shutdown`) while the log is open.
  await step('closing the streaming server', async () => o.streaming?.close());
  // Calls in flight have finished or compensated; task events stop before the log closes.
  await step('stopping task events and container output', async () => o.cri?.stop());
  await step('stopping the relay', async () => o.relay?.stop());
  // Nothing appends any more: a last snapshot makes the next start replay nothing.
  await step('writing a last snapshot', async () => o.snapshotWriter?.stop({ final: true }));
  await step('closing the log', () => o.log.close());
  o.logger.info({ code }, 'stopped');
  return code;
}
