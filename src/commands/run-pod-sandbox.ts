import { z } from 'zod';
import { InvalidArgumentError, NotFoundError } from '../domain/errors.js';
import type { NewEvent } from '../domain/events.js';
import { RESOURCE_ID, sandboxStream } from '../domain/ids.js';
import {
  absolutePath,
  labelMap,
  namespacedSysctls,
  plainText,
  runtimeHandler,
  sysctls,
  textMap,
} from '../domain/text.js';
import type { Ledger } from './ledger.js';
import { resultUndelivered, retryServed, runOnce, type NameReservations } from './name-reservations.js';
import type {
  Caller,
  ContainerRuntime,
  ImageStore,
  PodFiles,
  PortMapping,
  RootfsMount,
  SandboxNetwork,
  SandboxSpecFactory,
  TaskRuntime,
} from './ports.js';
import { endPauseTask, KIND_LABEL, runtimeFor } from './pod-runtime.js';
import { runSaga, type Failpoints, type SagaObserver, type SagaStep } from './saga.js';
import { discardSandboxResult, supersededMessage } from './undelivered-results.js';

/*
 * RunPodSandbox, after containerd's (1.6):
 *
 *   validate -> pause image lookup -> pause spec -> SandboxReserved + SpecGenerated (one
 *   synced write) -> PodFiles -> NetworkNamespace -> NetworkSetUp (CNI ADD)
 *   -> PauseCreated (the containerd record) -> SnapshotPrepared -> SandboxReady (pause
 *   task started with the snapshot's mounts from Prepare)
 *
 * A host-network pod skips the namespace and CNI steps. As in CreateContainer, all
 * refusals come before the name is reserved, and every side effect from there on is
 * keyed by the sandbox id and undone newest first on failure.
 */

export const OPERATION = 'RunPodSandbox';

const RECORD = z.record(z.string(), z.string());
const NAMESPACE_MODE = z.enum(['POD', 'CONTAINER', 'NODE', 'TARGET']).or(z.number());

export const RunPodSandboxRequest = z.object({
  config: z
    .object({
      metadata: z
        .object({ name: z.string(), uid: z.string(), namespace: z.string(), attempt: z.number().int().nonnegative() })
        .nullable(),
      hostname: z.string().default(''),
      logDirectory: z.string().default(''),
      dnsConfig: z
        .object({ servers: z.array(z.string()), searches: z.array(z.string()), options: z.array(z.string()) })
        .nullable()
        .default(null),
      portMappings: z
        .array(
          z.object({
            protocol: z.union([z.string(), z.number()]),
            containerPort: z.number().int(),
            hostPort: z.number().int(),
            hostIp: z.string().default(''),
          }),
        )
        .default([]),
      labels: RECORD.default({}),
      annotations: RECORD.default({}),
      linux: z
        .object({
          securityContext: z
            .object({
              namespaceOptions: z
                .object({
                  network: NAMESPACE_MODE.default('POD'),
                  pid: NAMESPACE_MODE.default('CONTAINER'),
                  ipc: NAMESPACE_MODE.default('POD'),
                })
                .passthrough()
                .nullable(),
            })
            .passthrough()
            .nullable(),
          sysctls: RECORD.default({}),
        })
        .passthrough()
        .nullable()
        .default(null),
    })
    .passthrough()
    .nullable(),
  runtimeHandler: z.string().default(''),
});
export type RunPodSandboxRequest = z.input<typeof RunPodSandboxRequest>;

export interface RunPodSandboxCommand {
  request: RunPodSandboxRequest;
  sandboxId: string;
  requestDigest: string;
  correlationId: string;
  now: string;
  /** The caller's deadline, ms since the epoch: a step still running then records OperationStalled. */
  deadline?: number;
  /** Whether the request's caller still waits (the gRPC edge); absent: it always does. */
  caller?: Caller;
}

export interface RunPodSandboxDeps {
  ledger: Ledger;
  names: NameReservations;
  images: ImageStore;
  /** Pulls the sandbox image (a PullImage with its events); absent: a missing pause image is NOT_FOUND. */
  pullSandboxImage?: (correlationId: string) => Promise<unknown>;
  runtime: ContainerRuntime;
  tasks: TaskRuntime;
  network: SandboxNetwork;
  files: PodFiles;
  specs: SandboxSpecFactory;
  /** The pause image reference (config `sandboxImage`). */
  sandboxImage: string;
  failpoints?: Failpoints;
  /** Step and saga durations, for metrics. */
  sagaObserver?: SagaObserver;
}

/** `<name>_<namespace>_<uid>_<attempt>`, as kubelet names sandboxes. */
export function sandboxName(m: { name: string; uid: string; namespace: string; attempt: number }): string {
  return [m.name, m.namespace, m.uid, m.attempt].join('_');
}

function mode(value: unknown): string {
  return typeof value === 'number' ? (['POD', 'CONTAINER', 'NODE', 'TARGET'][value] ?? 'POD') : String(value);
}

const validPort = (port: number): boolean => Number.isInteger(port) && port >= 1 && port <= 65535;

/**
 * Each DNS server, search domain and option becomes one line or word of the pod's
 * resolv.conf: a newline in one would add a line of the caller's choosing.
 */
function dnsConfig(dns: { servers: string[]; searches: string[]; options: string[] } | null): void {
  if (dns === null) return;
  dns.servers.forEach((v, i) => plainText(v, `config.dns_config.servers[${i}]`));
  dns.searches.forEach((v, i) => plainText(v, `config.dns_config.searches[${i}]`));
  dns.options.forEach((v, i) => plainText(v, `config.dns_config.options[${i}]`));
}

export function validateRunPodSandbox(command: RunPodSandboxCommand) {
  const parsed = RunPodSandboxRequest.safeParse(command.request);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidArgumentError(issue.path.join('.') || 'request', issue.message);
  }
  if (!RESOURCE_ID.safeParse(command.sandboxId).success)
    throw new InvalidArgumentError('sandboxId', 'must be 64 hex characters');
  const config = parsed.data.config;
  if (config === null) throw new InvalidArgumentError('config', 'must be set');
  const m = config.metadata;
  if (m === null) throw new InvalidArgumentError('config.metadata', 'must be set');
  for (const field of ['name', 'uid', 'namespace'] as const) {
    if (m[field].length === 0) throw new InvalidArgumentError(`config.metadata.${field}`, 'must be set');
    plainText(m[field], `config.metadata.${field}`);
  }
  labelMap(config.labels, 'config.labels');
  textMap(config.annotations, 'config.annotations');
  plainText(config.hostname, 'config.hostname');
  sysctls(config.linux?.sysctls ?? {}, 'config.linux.sysctls');
  const ns = config.linux?.securityContext?.namespaceOptions ?? null;
  // kubelet's log directory for the pod; the containers' log paths are joined to it.
  if (config.logDirectory !== '') absolutePath(config.logDirectory, 'config.log_directory');
  dnsConfig(config.dnsConfig);
  const portMappings: PortMapping[] = config.portMappings.map((p, i) => {
    const field = `config.port_mappings[${i}]`;
    const protocol = String(
      typeof p.protocol === 'number' ? ['TCP', 'UDP', 'SCTP'][p.protocol] : p.protocol,
    ).toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp')
      throw new InvalidArgumentError(`${field}.protocol`, `unknown protocol ${String(p.protocol)}`);
    // host_port 0 is how kubelet sends "no host port" (the mapping is then dropped before CNI).
    if (!validPort(p.containerPort))
      throw new InvalidArgumentError(`${field}.container_port`, `${p.containerPort} is not a port (1-65535)`);
    if (p.hostPort !== 0 && !validPort(p.hostPort))
      throw new InvalidArgumentError(`${field}.host_port`, `${p.hostPort} is not a port (1-65535, or 0 for none)`);
    plainText(p.hostIp, `${field}.host_ip`);
    return { protocol, containerPort: p.containerPort, hostPort: p.hostPort, hostIp: p.hostIp };
  });
  namespacedSysctls(config.linux?.sysctls ?? {}, 'config.linux.sysctls', {
    network: ns !== null && mode(ns.network) === 'NODE',
    ipc: ns !== null && mode(ns.ipc) === 'NODE',
  });
  return {
    config,
    metadata: m,
    namespaceOptions: {
      network: ns ? mode(ns.network) : 'POD',
      pid: ns ? mode(ns.pid) : 'CONTAINER',
      ipc: ns ? mode(ns.ipc) : 'POD',
    },
    hostNetwork: ns !== null && mode(ns.network) === 'NODE',
    hostIpc: ns !== null && mode(ns.ipc) === 'NODE',
    portMappings,
    runtimeHandler: runtimeHandler(parsed.data.runtimeHandler, 'runtime_handler'),
  };
}

/** Runs RunPodSandbox; resolves with the sandbox id once SandboxReady is recorded. */
export async function runPodSandbox(deps: RunPodSandboxDeps, command: RunPodSandboxCommand): Promise<string> {
  const v = validateRunPodSandbox(command);
  const name = sandboxName(v.metadata);
  // The retry rules are CreateContainer's: same request, same id; another request
  // replaces a sandbox whose id reached no caller.
  const p = deps.ledger.projections;
  return runOnce(
    deps.names,
    {
      name,
      requestDigest: command.requestDigest,
      id: command.sandboxId,
      ...(command.caller ? { caller: command.caller } : {}),
    },
    {
      holder: (id) => p.sandboxes.get(id),
      undelivered: (id) => p.undelivered.get(sandboxStream(id)) !== undefined && p.sandboxes.get(id)?.state === 'READY',
      served: (id) => retryServed(deps.ledger, sandboxStream(id), command),
      undeliveredTo: (id, gaveUp) =>
        resultUndelivered(
          deps.ledger,
          sandboxStream(id),
          {
            name,
            requestDigest: command.requestDigest,
            correlationId: command.correlationId,
            callerDeadline: command.caller?.deadline,
          },
          gaveUp,
        ),
      replace: async (id) => {
        const undelivered = p.undelivered.get(sandboxStream(id));
        if (!undelivered) return;
        const message = supersededMessage(undelivered, command.requestDigest);
        await discardSandboxResult(deps, {
          id,
          reason: 'superseded',
          message,
          supersededBy: command.requestDigest,
          correlationId: command.correlationId,
          now: command.now,
        });
      },
    },
    () => run(deps, command, v),
  );
}

async function run(
  deps: RunPodSandboxDeps,
  command: RunPodSandboxCommand,
  v: ReturnType<typeof validateRunPodSandbox>,
): Promise<string> {
  let image = await deps.images.resolve(deps.sandboxImage);
  if (!image && deps.pullSandboxImage) {
    // As containerd's CRI does: the pause image is pulled when it is missing.
    await deps.pullSandboxImage(command.correlationId);
    image = await deps.images.resolve(deps.sandboxImage);
  }
  if (!image) throw new NotFoundError('sandbox image', deps.sandboxImage);
  const id = command.sandboxId;
  const name = sandboxName(v.metadata);
  const c = command.correlationId;
  const netnsPath = v.hostNetwork ? '' : deps.network.netnsPathFor(id);
  const built = await deps.specs.sandboxSpec({ sandboxId: id, config: command.request.config, image, netnsPath });
  const network = {
    sandboxId: id,
    netnsPath,
    podName: v.metadata.name,
    podNamespace: v.metadata.namespace,
    podUid: v.metadata.uid,
    portMappings: v.portMappings,
  };
  let ips = { ip: '', additionalIps: [] as string[] };
  const snapshotRef = { snapshotter: image.snapshotter, key: id, parent: image.chainId };
  let rootfs: RootfsMount[] | undefined;

  deps.names.claim(name, id);
  const steps: SagaStep<undefined>[] = [
    {
      name: 'SandboxReserved',
      pure: true,
      run: async (): Promise<NewEvent[]> => [
        {
          type: 'SandboxReserved',
          correlationId: c,
          data: {
            sandboxId: id,
            name,
            metadata: v.metadata,
            requestDigest: command.requestDigest,
            runtimeHandler: v.runtimeHandler,
            hostNetwork: v.hostNetwork,
            namespaceOptions: v.namespaceOptions,
            labels: v.config.labels,
            annotations: v.config.annotations,
            portMappings: v.portMappings,
          },
        },
      ],
    },
    {
      name: 'SpecGenerated',
      pure: true,
      run: async (): Promise<NewEvent[]> => [
        {
          type: 'SpecGenerated',
          correlationId: c,
          data: {
            spec: built.spec,
            specDigest: built.specDigest,
            runtimeHandler: v.runtimeHandler,
            imageRef: image.id,
          },
        },
      ],
    },
    {
      name: 'PodFiles',
      run: () =>
        deps.files.create(id, {
          hostname: v.config.hostname || v.metadata.name,
          dns: v.config.dnsConfig,
          hostIpc: v.hostIpc,
        }),
      undo: () => deps.files.remove(id),
    },
  ];
  if (!v.hostNetwork) {
    steps.push(
      {
        name: 'NetworkNamespace',
        run: async () => {
          await deps.network.createNetns(id);
        },
        undo: () => deps.network.removeNetns(id),
      },
      {
        name: 'NetworkSetUp',
        run: async () => {
          ips = await deps.network.setUp(network);
        },
        undo: () => deps.network.tearDown(network),
      },
    );
  }
  steps.push(
    {
      // The record first: it names the snapshot, which keeps containerd's GC off it.
      name: 'PauseCreated',
      run: () =>
        deps.runtime.createContainer({
          id,
          spec: built.spec,
          image,
          snapshot: snapshotRef,
          runtime: runtimeFor(v.runtimeHandler),
          labels: { [KIND_LABEL]: 'sandbox' },
          extension: { name, metadata: v.metadata },
        }),
      undo: () => deps.runtime.deleteContainer(id),
    },
    {
      name: 'SnapshotPrepared',
      run: async (): Promise<NewEvent[]> => {
        rootfs = (await deps.runtime.prepareSnapshot(id, image, {})).mounts;
        return [{ type: 'SnapshotPrepared', correlationId: c, data: snapshotRef }];
      },
      undo: () => deps.runtime.removeSnapshot(id, image.snapshotter),
    },
    {
      name: 'SandboxReady',
      run: async (): Promise<NewEvent[]> => {
        const { pid } = await deps.tasks.start(id, { terminal: false }, rootfs);
        return [
          {
            type: 'SandboxReady',
            correlationId: c,
            data: { createdAt: command.now, pid, ip: ips.ip, additionalIps: ips.additionalIps, netnsPath },
          },
        ];
      },
      undo: () => endPauseTask(deps.tasks, id),
    },
  );
  try {
    await runSaga({
      operation: OPERATION,
      ledger: deps.ledger,
      stream: sandboxStream(id),
      version: 0,
      correlationId: c,
      steps,
      ctx: undefined,
      name,
      ...(deps.failpoints ? { failpoints: deps.failpoints } : {}),
      ...(deps.sagaObserver ? { observer: deps.sagaObserver } : {}),
      ...(command.deadline === undefined ? {} : { deadline: command.deadline }),
    });
  } finally {
    deps.names.settle(name, id);
  }
  return id;
}
