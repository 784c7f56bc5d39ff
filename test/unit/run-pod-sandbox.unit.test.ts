import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ledger } from '../../src/commands/ledger.js';
import { NameReservations } from '../../src/commands/name-reservations.js';
import {
  runPodSandbox,
  type RunPodSandboxCommand,
  type RunPodSandboxDeps,
} from '../../src/commands/run-pod-sandbox.js';
import type { Failpoints } from '../../src/commands/saga.js';
import { InvalidArgumentError, NameConflictError, NotFoundError } from '../../src/domain/errors.js';
import type { LedgerEvent } from '../../src/domain/events.js';
import { sandboxStream } from '../../src/domain/ids.js';
import {
  FakeImages,
  FakeNetwork,
  FakePodFiles,
  FakeRuntime,
  FakeSandboxSpecs,
  FakeTasks,
} from '../support/fake-runtime.js';
import { digest, hexId } from '../support/fixtures.js';
import { MemoryEventLog } from '../support/memory-event-log.js';

const STEPS = [
  'SandboxReserved',
  'SpecGenerated',
  'PodFiles',
  'NetworkNamespace',
  'NetworkSetUp',
  'PauseCreated',
  'SnapshotPrepared',
  'SandboxReady',
];

async function world(failpoints?: Failpoints) {
  const log = new MemoryEventLog();
  const ledger = await Ledger.load(log);
  const deps = {
    ledger,
    names: new NameReservations(ledger.projections.sandboxNames),
    images: new FakeImages(),
    runtime: new FakeRuntime(),
    tasks: new FakeTasks(),
    network: new FakeNetwork(),
    files: new FakePodFiles(),
    specs: new FakeSandboxSpecs(),
    sandboxImage: 'busybox',
    ...(failpoints ? { failpoints } : {}),
  } satisfies RunPodSandboxDeps;
  const leftovers = () => ({
    netns: deps.network.netns.size,
    cni: deps.network.attached.size,
    files: deps.files.pods.size,
    snapshots: deps.runtime.snapshots.size,
    containers: deps.runtime.containers.size,
    tasks: deps.tasks.running.size,
  });
  return { log, ledger, deps, leftovers };
}

const NOTHING = { netns: 0, cni: 0, files: 0, snapshots: 0, containers: 0, tasks: 0 };
let counter = 0;
function command(configPatch: Record<string, unknown> = {}): RunPodSandboxCommand {
  return {
    sandboxId: hexId(`sandbox-${counter++}`),
    requestDigest: digest('pod-request'),
    correlationId: `req-pod-${counter}`,
    now: '2026-11-28T10:00:00.000Z',
    request: {
      config: {
        metadata: { name: 'web', uid: 'uid-1', namespace: 'default', attempt: 0 },
        portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '' }],
        ...configPatch,
      },
      runtimeHandler: '',
    },
  };
}

const types = (events: LedgerEvent[]) => events.map((e) => e.type);

describe('RunPodSandbox', () => {
  it('sets up the pod network, starts the pause task and records the sandbox READY with its IP', async () => {
    const { log, ledger, deps } = await world();
    const cmd = command();
    const id = await runPodSandbox(deps, cmd);
    assert.deepEqual(types(await log.readStream(sandboxStream(id))), [
      'SandboxReserved',
      'SpecGenerated',
      'SnapshotPrepared',
      'SandboxReady',
    ]);
    const record = ledger.projections.sandboxes.get(id)!;
    assert.equal(record.state, 'READY');
    assert.equal(record.ip, '10.88.0.7');
    assert.equal(record.netnsPath, `/run/cri-ledger/netns/${id}`);
    assert.equal(ledger.projections.sandboxNames.get('web_default_uid-1_0')?.holderId, id);
    assert.deepEqual(deps.network.attached.get(id)?.portMappings, [
      { protocol: 'tcp', containerPort: 80, hostPort: 8080, hostIp: '' },
    ]);
    assert.equal(deps.tasks.running.get(id), record.pid);
  });

  it('records the port mappings CNI ADD got in SandboxReserved v2, so DEL can be given them from the log', async () => {
    const { log, ledger, deps } = await world();
    const id = await runPodSandbox(deps, command());
    const [reserved] = await log.readStream(sandboxStream(id));
    assert.equal(reserved?.type, 'SandboxReserved');
    assert.equal(reserved?.v, 2);
    assert.deepEqual(
      (reserved?.data as { portMappings: unknown } | undefined)?.portMappings,
      deps.network.attached.get(id)?.portMappings,
    );
    assert.deepEqual(ledger.projections.sandboxes.get(id)?.portMappings, [
      { protocol: 'tcp', containerPort: 80, hostPort: 8080, hostIp: '' },
    ]);
  });

  it('uses the host network without a namespace or CNI when the pod asks for NODE networking', async () => {
    const { ledger, deps } = await world();
    const id = await runPodSandbox(
      deps,
      command({ linux: { securityContext: { namespaceOptions: { network: 'NODE', ipc: 'POD' } } } }),
    );
    assert.equal(deps.network.netns.size, 0);
    assert.equal(deps.network.attached.size, 0);
    assert.equal(ledger.projections.sandboxes.get(id)?.hostNetwork, true);
    assert.equal(ledger.projections.sandboxes.get(id)?.netnsPath, '');
  });

  for (const step of STEPS) {
    it(`compensates a failure at ${step}: nothing left behind, the name free, and a retry succeeds`, async () => {
      let armed = true;
      const { log, ledger, deps, leftovers } = await world({
        hit: async (point) => {
          if (armed && point === `RunPodSandbox.${step}`) {
            armed = false;
            throw new Error(`injected at ${step}`);
          }
        },
      });
      const cmd = command();
      await assert.rejects(runPodSandbox(deps, cmd), new RegExp(`injected at ${step}`));
      const last = (await log.readStream(sandboxStream(cmd.sandboxId))).at(-1) as LedgerEvent<'Compensated'>;
      assert.equal(last.type, 'Compensated');
      assert.equal(last.data.failedStep, step);
      assert.deepEqual(leftovers(), NOTHING);
      assert.equal(ledger.projections.sandboxNames.size, 0);
      assert.equal(ledger.projections.sandboxes.size, 0);
      const retry = await runPodSandbox(deps, command());
      assert.equal(ledger.projections.sandboxes.get(retry)?.state, 'READY');
    });
  }

  it('tears the network down when the pause task fails to start', async () => {
    const { deps, leftovers } = await world();
    deps.tasks.failOn('start');
    await assert.rejects(runPodSandbox(deps, command()), /start failed/);
    assert.deepEqual(leftovers(), NOTHING);
  });

  it('refuses bad input before any event is written', async () => {
    const cases: Array<[RunPodSandboxCommand, RegExp, new (...args: never[]) => Error]> = [
      [{ ...command(), request: { config: null } }, /^config: must be set/, InvalidArgumentError],
      [command({ metadata: null }), /config\.metadata/, InvalidArgumentError],
      [
        command({ metadata: { name: 'web', uid: '', namespace: 'default', attempt: 0 } }),
        /config\.metadata\.uid/,
        InvalidArgumentError,
      ],
      [
        command({ portMappings: [{ protocol: 'QUIC', containerPort: 1, hostPort: 1, hostIp: '' }] }),
        /port_mappings\[0\]\.protocol/,
        InvalidArgumentError,
      ],
      [
        command({ portMappings: [{ protocol: 'TCP', containerPort: 0, hostPort: 80, hostIp: '' }] }),
        /^config\.port_mappings\[0\]\.container_port: 0 /,
        InvalidArgumentError,
      ],
      [
        command({ portMappings: [{ protocol: 'TCP', containerPort: 65536, hostPort: 0, hostIp: '' }] }),
        /^config\.port_mappings\[0\]\.container_port/,
        InvalidArgumentError,
      ],
      [
        command({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 70000, hostIp: '' }] }),
        /^config\.port_mappings\[0\]\.host_port: 70000 /,
        InvalidArgumentError,
      ],
      [
        command({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: -1, hostIp: '' }] }),
        /^config\.port_mappings\[0\]\.host_port/,
        InvalidArgumentError,
      ],
      [
        command({ dnsConfig: { servers: ['10.0.0.10\nnameserver 6.6.6.6'], searches: [], options: [] } }),
        /^config\.dns_config\.servers\[0\]: contains a control character/,
        InvalidArgumentError,
      ],
      [
        command({ dnsConfig: { servers: [], searches: ['a.local', 'b\r'], options: [] } }),
        /^config\.dns_config\.searches\[1\]/,
        InvalidArgumentError,
      ],
      [
        command({ dnsConfig: { servers: [], searches: [], options: ['ndots:5\u0000'] } }),
        /^config\.dns_config\.options\[0\]/,
        InvalidArgumentError,
      ],
      [
        command({ logDirectory: 'var/log/pods/x' }),
        /^config\.log_directory: "var\/log\/pods\/x" is not absolute/,
        InvalidArgumentError,
      ],
      [command({ logDirectory: '/var/log/pods/../../etc' }), /^config\.log_directory/, InvalidArgumentError],
    ];
    for (const [cmd, message, type] of cases) {
      const { log, deps, leftovers } = await world();
      await assert.rejects(
        runPodSandbox(deps, cmd),
        (e: unknown) => e instanceof type && message.test((e as Error).message),
      );
      assert.equal(log.head(), 0);
      assert.deepEqual(leftovers(), NOTHING);
    }
    const accepted = await world();
    const noHostPort = command({
      portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 0, hostIp: '' }],
      logDirectory: '/var/log/pods/default_web_uid-1',
    });
    await runPodSandbox(accepted.deps, noHostPort);
    assert.ok(accepted.log.head() > 0, 'host_port 0 (no host port) and an absolute log directory are accepted');
    const { log, deps } = await world();
    deps.images.images.clear();
    await assert.rejects(runPodSandbox(deps, command()), NotFoundError);
    assert.equal(log.head(), 0);
  });

  it('lets one of 8 concurrent calls with one name run the sandbox: the same request gets its id, another ALREADY_EXISTS', async () => {
    const { ledger, deps } = await world();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        runPodSandbox(deps, i % 2 === 0 ? command() : { ...command(), requestDigest: digest(`other-${i}`) }),
      ),
    );
    const ids = new Set(
      results.filter((r): r is PromiseFulfilledResult<string> => r.status === 'fulfilled').map((r) => r.value),
    );
    assert.equal(ids.size, 1);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 4);
    for (const r of results)
      if (r.status === 'rejected') assert.ok(r.reason instanceof NameConflictError, String(r.reason));
    assert.equal(ledger.projections.sandboxes.size, 1);
    assert.equal(deps.tasks.running.size, 1);
  });
});
