import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';

/*
 * Hostile requests over the socket, with real bytes (not escaped text): each is refused
 * with INVALID_ARGUMENT naming the field (or RESOURCE_EXHAUSTED for a message over the
 * limit) before any event is written, and the service keeps serving. A newline in an
 * env value is not an injection: it stays inside its one variable.
 */

describe('hostile input over the CRI socket', () => {
  let h: CriHarness;
  let podId = '';
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const pod = {
    metadata: { name: 'hostile', uid: 'uid-hostile', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const head = (): Promise<number> => ledgerHead(h.socket);
  const create = (config: Record<string, unknown>) =>
    call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: pod,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: 'busybox' }, ...config },
    });
  const refusedBeforeAnyEvent = async (attempt: () => Promise<unknown>, code: Status, field: RegExp) => {
    const before = await head();
    const e = (await attempt().then(
      () => assert.fail(`the call succeeded (expected ${Status[code]} for ${field})`),
      (error: ServiceError) => error,
    )) as ServiceError;
    assert.equal(e.code, code, `${Status[e.code]}: ${e.details}`);
    assert.match(e.details, field);
    assert.equal(await head(), before, 'no event was written');
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-hostile-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('refuses newline, carriage return and NUL bytes in names, label and annotation keys, and NUL in values', async () => {
    await refusedBeforeAnyEvent(
      () => create({ metadata: { name: 'app\nroot', attempt: 0 } }),
      Status.INVALID_ARGUMENT,
      /^config\.metadata\.name/,
    );
    await refusedBeforeAnyEvent(
      () => create({ labels: { 'tier\r': 'web' } }),
      Status.INVALID_ARGUMENT,
      /^config\.labels key/,
    );
    await refusedBeforeAnyEvent(
      () => create({ annotations: { note: 'a\u0000b' } }),
      Status.INVALID_ARGUMENT,
      /^config\.annotations\["note"\]/,
    );
    await refusedBeforeAnyEvent(
      () => create({ envs: [{ key: 'HOME', value: '/root\u0000' }] }),
      Status.INVALID_ARGUMENT,
      /^config\.envs\[0\]\.value/,
    );
    await refusedBeforeAnyEvent(
      () => create({ envs: [{ key: 'A\nB', value: 'x' }] }),
      Status.INVALID_ARGUMENT,
      /^config\.envs\[0\]\.key/,
    );
    const badPod = { ...pod, metadata: { ...pod.metadata, namespace: 'default\n' } };
    await refusedBeforeAnyEvent(
      () => call('runPodSandbox', { config: badPod }),
      Status.INVALID_ARGUMENT,
      /^config\.metadata\.namespace/,
    );
  });

  it('keeps a newline in HOME inside that one variable of the container', async () => {
    const { containerId } = await create({
      metadata: { name: 'home', attempt: 0 },
      command: ['sleep', '3600'],
      envs: [{ key: 'HOME', value: '/tmp\nINJECTED=1' }],
    });
    await call('startContainer', { containerId });
    const env = await call<{ stdout: Buffer }>('execSync', {
      containerId,
      cmd: ['sh', '-c', 'printf "%s|" "$HOME"; printf "%s" "${INJECTED:-unset}"'],
      timeout: 5,
    });
    assert.equal(env.stdout.toString(), '/tmp\nINJECTED=1|unset');
    await call('removeContainer', { containerId });
  });

  it('refuses a uid or gid above 2^31-1 or negative (CVE-2024-40635), and absurd resources', async () => {
    const sc = (securityContext: object) => ({ linux: { securityContext } });
    await refusedBeforeAnyEvent(
      () => create(sc({ runAsUser: { value: '2147483648' } })),
      Status.INVALID_ARGUMENT,
      /run_as_user/,
    );
    await refusedBeforeAnyEvent(
      () => create(sc({ runAsUser: { value: '-1' } })),
      Status.INVALID_ARGUMENT,
      /run_as_user/,
    );
    await refusedBeforeAnyEvent(
      () => create(sc({ runAsUser: { value: '0' }, runAsGroup: { value: '4294967295' } })),
      Status.INVALID_ARGUMENT,
      /run_as_group/,
    );
    await refusedBeforeAnyEvent(
      () => create(sc({ supplementalGroups: ['2147483648'] })),
      Status.INVALID_ARGUMENT,
      /supplemental_groups/,
    );
    await refusedBeforeAnyEvent(
      () => create({ linux: { resources: { memoryLimitInBytes: '-5' } } }),
      Status.INVALID_ARGUMENT,
      /memory_limit_in_bytes/,
    );
    await refusedBeforeAnyEvent(
      () => create({ linux: { resources: { cpuQuota: '-7' } } }),
      Status.INVALID_ARGUMENT,
      /cpu_quota/,
    );
    await refusedBeforeAnyEvent(
      () => create({ linux: { resources: { cpuShares: '99999999' } } }),
      Status.INVALID_ARGUMENT,
      /cpu_shares/,
    );
  });

  it('refuses a sysctl value carrying a second assignment (CVE-2022-0811)', async () => {
    const config = {
      ...pod,
      metadata: { ...pod.metadata, name: 'sysctl' },
      linux: { ...pod.linux, sysctls: { 'kernel.shm_rmid_forced': '1+kernel.core_pattern=|/tmp/pwn' } },
    };
    await refusedBeforeAnyEvent(
      () => call('runPodSandbox', { config }),
      Status.INVALID_ARGUMENT,
      /^config\.linux\.sysctls\["kernel\.shm_rmid_forced"\]/,
    );
  });

  it('refuses traversing paths before any side effect', async () => {
    const withLogs = { ...pod, logDirectory: '/var/log/pods/default_hostile_uid-hostile' };
    const traversing = {
      metadata: { name: 'app', attempt: 0 },
      image: { image: 'busybox' },
      logPath: '../../../etc/cron.d/x',
    };
    await refusedBeforeAnyEvent(
      () => call('createContainer', { podSandboxId: podId, sandboxConfig: withLogs, config: traversing }),
      Status.INVALID_ARGUMENT,
      /^config\.log_path: .*escapes the log directory/,
    );
    await refusedBeforeAnyEvent(
      () => create({ mounts: [{ containerPath: 'relative/path', hostPath: '/tmp' }] }),
      Status.INVALID_ARGUMENT,
      /container_path/,
    );
    await refusedBeforeAnyEvent(
      () =>
        create({
          linux: { securityContext: { seccomp: { profileType: 'Localhost', localhostRef: '../etc/passwd' } } },
        }),
      Status.INVALID_ARGUMENT,
      /seccomp/,
    );
  });

  it('refuses control bytes in DNS settings, ports outside 1-65535 and a relative log directory, leaving nothing behind', async () => {
    const podConfig = (patch: object) => ({
      ...pod,
      metadata: { ...pod.metadata, name: 'badpod' },
      linux: {},
      ...patch,
    });
    const dns = (d: object) => podConfig({ dnsConfig: { servers: [], searches: [], options: [], ...d } });
    const port = (p: object) =>
      podConfig({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '', ...p }] });
    const sandboxesBefore = await readdir(join(h.root, 'sandboxes')).catch((): string[] => []);
    const containersBefore = (await unaryCall<{ containers: unknown[] }>(h.api.containers, 'List', {})).containers
      .length;
    const refused: Array<[object, RegExp]> = [
      [
        dns({ servers: ['10.96.0.10\nnameserver 203.0.113.1'] }),
        /^config\.dns_config\.servers\[0\]: contains a control character/,
      ],
      [
        dns({ searches: ['svc.cluster.local', 'x\roptions debug'] }),
        /^config\.dns_config\.searches\[1\]: contains a control character/,
      ],
      [dns({ options: ['ndots:5\u0007'] }), /^config\.dns_config\.options\[0\]: contains a control character/],
      [port({ containerPort: 0 }), /^config\.port_mappings\[0\]\.container_port: 0 is not a port/],
      [port({ containerPort: 65536 }), /^config\.port_mappings\[0\]\.container_port: 65536 is not a port/],
      [port({ hostPort: 65536 }), /^config\.port_mappings\[0\]\.host_port: 65536 is not a port/],
      [port({ hostPort: -80 }), /^config\.port_mappings\[0\]\.host_port: -80 is not a port/],
      [
        podConfig({ logDirectory: 'var/log/pods/default_badpod_uid' }),
        /^config\.log_directory: "var\/log\/pods\/default_badpod_uid" is not absolute/,
      ],
    ];
    for (const [config, field] of refused)
      await refusedBeforeAnyEvent(() => call('runPodSandbox', { config }), Status.INVALID_ARGUMENT, field);
    assert.deepEqual(
      await readdir(join(h.root, 'sandboxes')).catch((): string[] => []),
      sandboxesBefore,
      'no pod files were made',
    );
    assert.equal(
      (await unaryCall<{ containers: unknown[] }>(h.api.containers, 'List', {})).containers.length,
      containersBefore,
      'no containerd record was made',
    );
    const pods = await call<{ items: Array<{ metadata: { name: string } }> }>('listPodSandbox', {});
    assert.equal(
      pods.items.some((p) => p.metadata.name === 'badpod'),
      false,
    );
  });

  it('refuses a runtime handler that is a path: containerd would run that binary as the shim', async () => {
    const config = { ...pod, metadata: { ...pod.metadata, name: 'handler' } };
    await refusedBeforeAnyEvent(
      () => call('runPodSandbox', { config, runtimeHandler: '/bin/sh' }),
      Status.INVALID_ARGUMENT,
      /^runtime_handler: "\/bin\/sh" is not a runtime/,
    );
    await refusedBeforeAnyEvent(
      () => call('runPodSandbox', { config, runtimeHandler: 'a\nb' }),
      Status.INVALID_ARGUMENT,
      /^runtime_handler: /,
    );
  });

  it('answers a refusal that quotes 64 KiB of newlines with a bounded message, and the connection keeps serving', async () => {
    const within = <T>(p: Promise<T>, ms: number) =>
      Promise.race([
        p,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)),
      ]);
    const e = (await within(call('containerStatus', { containerId: '\n'.repeat(65540) }), 10_000).then(
      () => assert.fail('the call succeeded'),
      (error: ServiceError) => error,
    )) as ServiceError;
    assert.equal(e.code, Status.NOT_FOUND, `${Status[e.code]}: ${e.details}`);
    assert.ok(e.details.length <= 1100, `the status message is bounded (${e.details.length} characters)`);
    assert.match(e.details, /more characters\)$/);
    const version = await within(call<{ runtimeName: string }>('version', {}), 10_000);
    assert.equal(version.runtimeName, 'cri-ledger');
  });

  it('refuses a 17 MiB message with RESOURCE_EXHAUSTED and keeps serving', async () => {
    await refusedBeforeAnyEvent(
      () => create({ annotations: { big: 'x'.repeat(17 * 1024 * 1024) } }),
      Status.RESOURCE_EXHAUSTED,
      /.*/,
    );
    const version = await call<{ runtimeName: string }>('version', {});
    assert.equal(version.runtimeName, 'cri-ledger');
  });
});
