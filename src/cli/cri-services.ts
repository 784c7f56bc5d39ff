import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { staleWhileRevalidate } from '../adapters/cache/stale-while-revalidate.js';
import { networkReady } from '../adapters/cni/cni-network.js';
import { CniPodNetwork } from '../adapters/cni/pod-network.js';
import { connectContainerd } from '../adapters/containerd/containerd-api.js';
import { unaryCall } from '../adapters/containerd/containerd-calls.js';
import { ContainerdHealth } from '../adapters/containerd/containerd-health.js';
import { ContainerdImageStore, DEFAULT_IMAGE_SNAPSHOTTER } from '../adapters/containerd/containerd-images.js';
import { ContainerdRuntime } from '../adapters/containerd/containerd-runtime.js';
import { ContainerdExec } from '../adapters/containerd/containerd-exec.js';
import { ContainerdStats } from '../adapters/containerd/containerd-stats.js';
import { ContainerdTaskEvents } from '../adapters/containerd/containerd-task-events.js';
import { ContainerdTasks } from '../adapters/containerd/containerd-tasks.js';
import { ContainerdImageFs } from '../adapters/containerd/containerd-image-fs.js';
import { readInventory } from '../adapters/containerd/containerd-inventory.js';
import { newEventId } from '../adapters/ids/event-id.js';
import { ContainerdPuller } from '../adapters/containerd/containerd-pull.js';
import { normalizeImageRef, pullTarget } from '../adapters/containerd/image-ref.js';
import { containerEventsService } from '../adapters/cri/container-events.js';
import { ContainerdAttach } from '../adapters/containerd/containerd-attach.js';
import { execDirsLeft, killExec, sweepExecDirs } from '../adapters/containerd/exec-process.js';
import type { SessionHandlers } from '../adapters/streaming/contracts.js';
import { sessionHandlers } from '../adapters/streaming/session-bridge.js';
import { ExitMonitor } from '../adapters/cri/exit-monitor.js';
import { UnclaimedResultTimer } from '../adapters/cri/unclaimed-results.js';
import { imageHandlers } from '../adapters/cri/image-handlers.js';
import { imagesAdminHandlers, RuntimeImagePuller } from '../adapters/images/runtime-images.js';
import { imagesServiceClass } from '../adapters/ledger-api/ledger-definition.js';
import { registrySource } from '../adapters/registry/registry-source.js';
import { HostContainerLogs } from '../adapters/logs/host-container-logs.js';
import {
  imageServiceV1,
  imageServiceV1alpha2,
  runtimeServiceV1,
  runtimeServiceV1alpha2,
} from '../adapters/cri/cri-definition.js';
import { runtimeHandlers } from '../adapters/cri/runtime-handlers.js';
import { criService, runtimeInfoHandlers, type RuntimeInfoDeps } from '../adapters/cri/runtime-info.js';
import { envFailpoints } from '../adapters/failpoints/env-failpoints.js';
import { HostContainerFiles } from '../adapters/fs/container-files.js';
import { HostPodFiles } from '../adapters/fs/pod-files.js';
import type { SocketService } from '../adapters/grpc/socket-server.js';
import { readHostFacts } from '../adapters/oci/host-facts.js';
import { OciSpecFactory } from '../adapters/oci/oci-spec-factory.js';
import type { LifecycleDeps } from '../commands/container-lifecycle.js';
import { ImagePulls } from '../commands/image-service.js';
import { KeyedLock } from '../commands/keyed-lock.js';
import type { ExecProcesses, SessionPayload, StreamingSessions } from '../commands/ports.js';
import {
  endSessionsLeftOpen,
  reconcileWithRuntime,
  recoverInFlight,
  type EndedSession,
  type RecoveryDeps,
} from '../commands/recover.js';
import { diffAgainstRuntime, inSync } from '../projections/runtime-diff.js';
import type { Ledger } from '../commands/ledger.js';
import type { SagaObserver } from '../commands/saga.js';
import { NameReservations } from '../commands/name-reservations.js';
import { nodeStream } from '../domain/ids.js';
import type { Config } from './config.js';

/** The CNI status read for Status is reused this long, then re-read while answered. */
const NETWORK_STATUS_FRESH_MS = 1_000;
const NETWORK_STATUS_STALE_MS = 30_000;
/** The version in package.json (this file is compiled to dist/src/cli/). */
export function packageVersion(): string {
  const path = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

/**
 * The CRI services, v1 and v1alpha2, over one containerd connection, and the adapters
 * the commands run on. containerd need not be up: the channel connects lazily, and
 * Status reports RuntimeReady=false with the reason until it answers.
 */
export interface CriServices {
  services: SocketService[];
  /** Starts following containerd's task events (after the socket is bound). */
  start(): void;
  /** Stops following task events and copying container output (before the log closes). */
  stop(): Promise<void>;
  close(): void;
  /** Whether containerd answered the last health probe (cached for a second). */
  containerdUp(): Promise<boolean>;
  /** What the streaming server runs a session with once its client connects (exec, attach, port forward). */
  sessionHandlers: SessionHandlers<SessionPayload>;
}

/** The streaming server Exec, Attach and PortForward hand out URLs on, and the exec backend's kill for recovery. */
export interface StreamingWiring {
  server?: StreamingSessions;
  execs?: ExecProcesses;
  /** Step and saga durations, for metrics. */
  sagaObserver?: SagaObserver;
}

export function createCriServices(
  config: Config,
  ledger: Ledger,
  logger: Logger,
  wiring: StreamingWiring = {},
): CriServices {
  // Leases of cri-ledger's older than this belong to operations of an earlier process.
  const startedAt = new Date().toISOString();
  const execDir = join(config.stateDir, 'exec');
  // What execs of an earlier run left (listed now, before this one can make any), swept
  // at the first connection to containerd.
  let execLeftovers: string[] | undefined = execDirsLeft(execDir);
  const api = connectContainerd({ address: config.containerd.address, namespace: config.containerd.namespace });
  const health = new ContainerdHealth(api);
  const runtimeVersion = packageVersion();
  // The CNI config and plugins are read from disk for kubelet's Status every few
  // seconds: answered from the last read, re-read in the background (a changed config
  // shows on the next poll).
  const cachedNetworkReady = staleWhileRevalidate(() => networkReady(config.cni.confDir, config.cni.binDir), {
    freshMs: NETWORK_STATUS_FRESH_MS,
    maxStaleMs: NETWORK_STATUS_STALE_MS,
  });
  const info = (apiVersion: RuntimeInfoDeps['apiVersion']): RuntimeInfoDeps => ({
    apiVersion,
    runtimeVersion,
    runtimeReady: () => health.check(),
    networkReady: cachedNetworkReady,
    effectiveConfig: () => config,
    cgroupDriver: config.cgroupDriver,
    podCidr: async () => {
      const events = await ledger.log.readStream(nodeStream(config.node));
      const last = events.filter((e) => e.type === 'PodCidrUpdated').at(-1);
      return last?.type === 'PodCidrUpdated' ? last.data.podCidr : '';
    },
  });
  const images = new ContainerdImageStore({ api });
  const runtime = new ContainerdRuntime({ api });
  const podFiles = new HostPodFiles({ root: config.root, stateDir: config.stateDir });
  const specs = new OciSpecFactory({
    host: readHostFacts(),
    options: {
      restrictOomScoreAdj: config.restrictOomScoreAdj,
      containerdNamespace: config.containerd.namespace,
      cgroupDriver: config.cgroupDriver,
    },
    sandboxFiles: (id, hostIpc) => podFiles.filesFor(id, hostIpc),
  });
  const failpoints = envFailpoints();
  const tasks = new ContainerdTasks({
    api,
    runcRoot: join(config.stateDir, 'runc'),
    systemdCgroup: config.cgroupDriver === 'systemd',
  });
  const containerFiles = new HostContainerFiles({ root: config.root, stateDir: config.stateDir });
  const logs = new HostContainerLogs({ logger });
  const lifecycle: LifecycleDeps = {
    ledger,
    locks: new KeyedLock(),
    tasks,
    logs,
    files: containerFiles,
    runtime,
    oomed: new Set(),
    tasksDeleted: new Set(),
    snapshotter: DEFAULT_IMAGE_SNAPSHOTTER,
    failpoints,
  };
  // Sessions a previous process left open: nothing bridges them now. Read before this
  // process can start one, ended (service-restarted) once the service runs.
  const sessionsLeftOpen = [...ledger.projections.sessions.values()];
  // The sagas a previous process left in flight: compensated once containerd answers.
  let toRecover = [...ledger.projections.operations.values()];
  const network = new CniPodNetwork({
    stateDir: config.stateDir,
    confDir: config.cni.confDir,
    binDir: config.cni.binDir,
  });
  const recovery: RecoveryDeps = {
    ledger,
    runtime,
    tasks,
    containerFiles,
    podFiles,
    network,
    snapshotter: DEFAULT_IMAGE_SNAPSHOTTER,
    clock: () => performance.now(),
    now: () => new Date().toISOString(),
  };
  const recover = async (): Promise<void> => {
    if (execLeftovers) {
      const swept = await sweepExecDirs(api, execDir, execLeftovers);
      execLeftovers = undefined;
      if (swept > 0) logger.warn({ swept }, 'removed the exec processes and FIFO directories an earlier run left');
    }
    if (toRecover.length > 0) {
      const outcomes = await recoverInFlight(recovery, toRecover);
      for (const o of outcomes) {
        if (o.rolledForward)
          logger.warn(
            { stream: o.stream, operation: o.operation },
            'rolled forward a saga the previous process left in flight; its result waits for a claim',
          );
        else if (o.compensated)
          logger.warn(
            { stream: o.stream, operation: o.operation },
            'compensated a saga the previous process left in flight',
          );
        else
          logger.error(
            { stream: o.stream, operation: o.operation, undone: o.undone },
            'could not undo a saga left in flight; will retry when containerd reconnects',
          );
      }
      toRecover = toRecover.filter((op) =>
        outcomes.some((o) => o.stream === op.stream && !o.compensated && !o.rolledForward),
      );
    }
    // After recovery, at every (re)connection: a saga whose undo failed while containerd
    // was away left its objects there (its stream ended with Compensated, so the log no
    // longer knows them); sagas running now are known to the log already (NameReserved
    // comes before any side effect), so they are never taken for orphans.
    if (toRecover.length > 0) return;
    const diff = diffAgainstRuntime(ledger.projections, await readInventory(api, DEFAULT_IMAGE_SNAPSHOTTER), {
      leasesBefore: startedAt,
    });
    await reconcileWithRuntime({ ...recovery, nodeStream: nodeStream(config.node), correlationId: newEventId() }, diff);
    if (!inSync(diff))
      logger.warn(
        {
          orphanContainers: diff.orphanContainers,
          orphanSnapshots: diff.orphanSnapshots,
          orphanLeases: diff.orphanLeases,
          missing: diff.missing,
        },
        'reconciled the log with containerd',
      );
  };
  const exits = new ExitMonitor({
    events: new ContainerdTaskEvents({ api, logger }),
    lifecycle,
    logger,
    onConnected: recover,
    // containerd 1.6 puts a task's container id in the process's `id` (container_id stays empty).
    taskIds: async () =>
      new Set(
        (await unaryCall<{ tasks: Array<{ id: string; container_id: string }> }>(api.tasks, 'List', {})).tasks.flatMap(
          (t) => [t.id, t.container_id],
        ),
      ),
  });
  const sandboxNames = new NameReservations(ledger.projections.sandboxNames);
  const containerNames = new NameReservations(ledger.projections.containerNames);
  // Results whose id reached no caller and that nobody claims are removed after the
  // configured time; the timer is armed from the log at start (docs/recovery.md).
  const unclaimed = new UnclaimedResultTimer({
    ledger,
    unclaimedTimeoutMs: config.unclaimedResultTimeout,
    logger,
    reap: {
      containers: { ledger, names: containerNames, runtime, files: containerFiles, locks: lifecycle.locks },
      sandboxes: { ledger, names: sandboxNames, runtime, tasks, network, files: podFiles },
    },
  });
  // One exec backend for ExecSync and exec sessions: they share its cache of process specs.
  const execBackend = new ContainerdExec({ api, fifoDir: execDir });
  const handlers = runtimeHandlers({
    ledger,
    node: config.node,
    lifecycle,
    ...(wiring.server ? { streaming: wiring.server } : {}),
    exec: execBackend,
    stats: new ContainerdStats({ api }),
    sandboxes: {
      names: sandboxNames,
      images,
      runtime,
      tasks,
      network,
      files: podFiles,
      specs,
      sandboxImage: config.sandboxImage,
      pullSandboxImage: (correlationId) => imagePulls.pull({ ...pullTarget(config.sandboxImage), correlationId }),
      failpoints,
      ...(wiring.sagaObserver ? { sagaObserver: wiring.sagaObserver } : {}),
    },
    containers: {
      names: containerNames,
      images,
      runtime,
      files: containerFiles,
      specs,
      failpoints,
      locks: lifecycle.locks,
      ...(wiring.sagaObserver ? { sagaObserver: wiring.sagaObserver } : {}),
    },
  });
  // Layers go straight into their snapshots unless their blobs are to be kept (docs/images.md).
  const puller = new ContainerdPuller(api, {
    streamUnpack: !config.images.keepLayerBlobs,
    afterLayer: () => failpoints.hit('PullImage.LayerUnpacked'),
  });
  const imagePulls = new ImagePulls({
    ledger,
    images,
    puller: new RuntimeImagePuller({
      puller,
      sourceFor: (reference, auth) =>
        registrySource(reference, { hostsDir: config.registry.configPath, ...(auth ? { auth } : {}) }),
    }),
    clock: () => performance.now(),
    failpoints,
  });
  const imageService = imageHandlers({
    ledger,
    images,
    pulls: imagePulls,
    imageFs: new ContainerdImageFs({ api, snapshotter: DEFAULT_IMAGE_SNAPSHOTTER }),
    sandboxImage: normalizeImageRef(config.sandboxImage),
  });
  const sessionHandlersOf = sessionHandlers({
    records: { ledger, locks: lifecycle.locks },
    startExec: (containerId, request) => execBackend.startExecSession(containerId, request),
    attach: new ContainerdAttach({
      api,
      output: logs,
      stdinPath: (id) => containerFiles.ioFor(id, { stdin: true, tty: false }).stdin!,
    }),
    logger,
  });
  const sessionRecovery = {
    ledger,
    locks: lifecycle.locks,
    now: () => new Date().toISOString(),
    // An exec a crashed process left running is killed by its session id (its containerd exec id).
    execs: wiring.execs ?? { kill: (containerId: string, execId: string) => killExec(api, containerId, execId) },
  };
  const reportEnded = (ended: EndedSession[]): void => {
    for (const e of ended) {
      if (e.recorded && !e.killError)
        logger.warn(
          { sessionId: e.sessionId, stream: e.stream, kind: e.kind },
          'ended a session the previous process left open',
        );
      else logger.error({ ...e }, 'could not fully end a session the previous process left open');
    }
  };
  // Only a log line at startup: the service does not wait for containerd, and Status reports it.
  void health.check().then(
    (h) => {
      if (h.ready)
        logger.info(
          { containerd: config.containerd.address, version: h.version, namespace: config.containerd.namespace },
          'containerd answers',
        );
      else
        logger.warn(
          { containerd: config.containerd.address, reason: h.message },
          'containerd is not reachable yet; RuntimeReady=false until it is',
        );
    },
    (error: unknown) =>
      logger.warn({ err: error, containerd: config.containerd.address }, 'checking containerd failed'),
  );
  const containerEvents = containerEventsService({ ledger, maxLagEvents: config.containerEvents.maxLag, logger });
  return {
    services: [
      {
        ...criService(runtimeServiceV1, {
          ...runtimeInfoHandlers(info('v1')),
          ...handlers,
          GetContainerEvents: containerEvents.GetContainerEvents,
        }),
        drain: containerEvents.drain,
      },
      criService(imageServiceV1, imageService),
      criService(runtimeServiceV1alpha2, { ...runtimeInfoHandlers(info('v1alpha2')), ...handlers }),
      criService(imageServiceV1alpha2, imageService),
      { definition: imagesServiceClass().service, implementation: imagesAdminHandlers({ ledger, puller, images }) },
    ],
    containerdUp: async () => (await health.check()).ready,
    sessionHandlers: sessionHandlersOf,
    start: () => {
      exits.start();
      unclaimed.start();
      if (sessionsLeftOpen.length > 0)
        void endSessionsLeftOpen(sessionRecovery, sessionsLeftOpen).then(reportEnded, (error: unknown) =>
          logger.error({ err: error }, 'ending the sessions the previous process left open failed'),
        );
    },
    async stop() {
      await unclaimed.stop();
      await exits.stop();
      await logs.closeAll();
    },
    close: () => api.close(),
  };
}
