import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { collectStream, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { runCli } from '../support/cli.js';
import { startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { BUSYBOX_IMAGE, buildTestImage } from '../support/oci-image.js';
import { removeAllPods } from '../support/pods.js';

/*
 * Path traversal on real containerd: a log path, mount path, image volume or localhost
 * seccomp path that leaves where it belongs (by `..`, by being absolute, or through a
 * symlink on the host) is refused with INVALID_ARGUMENT naming the field, and nothing
 * happened: no event, no directory, no containerd container or snapshot. A mount host
 * path swapped to a symlink after CreateContainer resolved (or made) it is refused at
 * StartContainer, before any task exists.
 */

describe('path traversal is refused before any side effect', () => {
  let h: CriHarness;
  let podId = '';
  const pod = {
    metadata: { name: 'paths', uid: 'uid-paths', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const call = <T = Record<string, unknown>>(method: string, request: object): Promise<T> => h.call<T>(method, request);
  const create = (config: Record<string, unknown>, sandboxConfig: object = pod) =>
    call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig,
      config: {
        metadata: { name: 'app', attempt: 0 },
        image: { image: 'busybox' },
        command: ['sleep', '3600'],
        ...config,
      },
    });

  /** Everything a refused request must not have changed. */
  const sideEffects = async () => {
    const client = LedgerClient.connect(h.socket);
    const head = await client
      .status()
      .then((s) => s.head)
      .finally(() => client.close());
    const containers = (await unaryCall<{ containers: Array<{ id: string }> }>(h.api.containers, 'List', {})).containers
      .map((c) => c.id)
      .sort();
    const snapshots = (
      await collectStream<{ info: Array<{ name: string }> }>(h.api.snapshots, 'List', { snapshotter: 'overlayfs' })
    )
      .flatMap((m) => m.info.map((i) => i.name))
      .sort();
    const dirs: Record<string, string[]> = {};
    for (const d of ['containers', 'sandboxes', 'state/containers', 'state/sandboxes'])
      dirs[d] = (await readdir(join(h.root, d)).catch((): string[] => [])).sort();
    return { head, containers, snapshots, dirs };
  };
  const refusedWithoutSideEffect = async (attempt: () => Promise<unknown>, field: RegExp) => {
    const before = await sideEffects();
    const e = (await attempt().then(
      () => assert.fail(`the call succeeded (expected INVALID_ARGUMENT for ${field})`),
      (error: ServiceError) => error,
    )) as ServiceError;
    assert.equal(e.code, Status.INVALID_ARGUMENT, `${Status[e.code]}: ${e.details}`);
    assert.match(e.details, field);
    assert.deepEqual(await sideEffects(), before, 'no event, directory, container or snapshot');
    return e.details;
  };

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-paths-' });
    podId = (await call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('refuses a log path with "..", an absolute one, and one through a symlink in the log directory', async () => {
    const logDirectory = join(h.root, 'pod-logs');
    const outside = join(h.root, 'outside');
    await mkdir(join(logDirectory, 'app'), { recursive: true });
    await mkdir(outside);
    await symlink(outside, join(logDirectory, 'evil'));
    await symlink(join(outside, 'target.log'), join(logDirectory, 'app', '0.log'));
    const withLogs = { ...pod, logDirectory };
    for (const logPath of ['../outside/x.log', 'app/../../outside/x.log', join(outside, 'x.log'), '/etc/cron.d/x']) {
      await refusedWithoutSideEffect(() => create({ logPath }, withLogs), /^config\.log_path: /);
    }
    await refusedWithoutSideEffect(
      () => create({ logPath: 'evil/x.log' }, withLogs),
      /^config\.log_path: .*outside the log directory/,
    );
    await refusedWithoutSideEffect(
      () => create({ logPath: 'app/0.log' }, withLogs),
      /^config\.log_path: .*is a symlink/,
    );
    assert.deepEqual(await readdir(outside), [], 'nothing was written through the symlinks');
  });

  it('refuses mount paths with "..", relative ones, and control bytes', async () => {
    const hostDir = join(h.root, 'host-data');
    await mkdir(hostDir, { recursive: true });
    await refusedWithoutSideEffect(
      () => create({ mounts: [{ containerPath: '/data/../../etc', hostPath: hostDir }] }),
      /^config\.mounts\[0\]\.container_path: .*"\.\." component/,
    );
    await refusedWithoutSideEffect(
      () =>
        create({
          mounts: [
            { containerPath: '/ok', hostPath: hostDir },
            { containerPath: '..', hostPath: hostDir },
          ],
        }),
      /^config\.mounts\[1\]\.container_path: .*not absolute/,
    );
    await refusedWithoutSideEffect(
      () => create({ mounts: [{ containerPath: '/data', hostPath: `${hostDir}/../../../etc` }] }),
      /^config\.mounts\[0\]\.host_path: .*"\.\." component/,
    );
    await refusedWithoutSideEffect(
      () => create({ mounts: [{ containerPath: '/data\n/etc', hostPath: hostDir }] }),
      /^config\.mounts\[0\]\.container_path: .*control character/,
    );
  });

  it('refuses an image whose config Volumes hold "../../etc"', async () => {
    for (const [i, volume] of ['../../etc', '/data/../../etc'].entries()) {
      const ref = `docker.io/library/traversal:v${i}`;
      const image = await buildTestImage({ ...BUSYBOX_IMAGE, ref, volumes: [volume] }, join(h.root, 'images'));
      const imported = await runCli(['images', 'import', image.file, '--socket', h.socket]);
      assert.equal(imported.code, 0, imported.stderr);
      await refusedWithoutSideEffect(() => create({ image: { image: ref } }), /^image\.config\.Volumes\[.*"\.\."/);
    }
  });

  it('refuses localhost seccomp paths with "..", relative ones, and symlinks or FIFOs, without quoting the target', async () => {
    const profiles = join(h.root, 'seccomp');
    await mkdir(profiles);
    await symlink('/etc/shadow', join(profiles, 'shadow.json'));
    execFileSync('mkfifo', [join(profiles, 'fifo.json')]);
    await writeFile(join(profiles, 'passwd-copy.json'), 'root:x:0:0:root:/root:/bin/sh\n');
    const sc = (securityContext: object) => ({ linux: { securityContext } });
    await refusedWithoutSideEffect(
      () => create(sc({ seccompProfilePath: 'localhost/../../etc/shadow' })),
      /seccomp_profile_path: .*must be an absolute path/,
    );
    await refusedWithoutSideEffect(
      () => create(sc({ seccompProfilePath: `localhost/${profiles}/../../../etc/shadow` })),
      /seccomp_profile_path: .*"\.\." component/,
    );
    await refusedWithoutSideEffect(
      () => create(sc({ seccomp: { profileType: 'Localhost', localhostRef: 'profiles/x.json' } })),
      /seccomp\.localhost_ref: .*must be an absolute path/,
    );
    await refusedWithoutSideEffect(
      () => create(sc({ seccomp: { profileType: 'Localhost', localhostRef: join(profiles, 'shadow.json') } })),
      /seccomp: .*is a symlink/,
    );
    await refusedWithoutSideEffect(
      () => create(sc({ seccomp: { profileType: 'Localhost', localhostRef: join(profiles, 'fifo.json') } })),
      /seccomp: .*not a regular file/,
    );
    const details = await refusedWithoutSideEffect(
      () => create(sc({ seccomp: { profileType: 'Localhost', localhostRef: join(profiles, 'passwd-copy.json') } })),
      /seccomp: .*not valid JSON/,
    );
    assert.doesNotMatch(details, /root:x/, 'the file content is not echoed to the caller');
    // The pod's own security context goes through the same loader.
    const badPod = {
      ...pod,
      metadata: { ...pod.metadata, name: 'paths-seccomp' },
      linux: {
        securityContext: {
          namespaceOptions: { network: 'NODE' },
          seccomp: { profileType: 'Localhost', localhostRef: join(profiles, 'shadow.json') },
        },
      },
    };
    await refusedWithoutSideEffect(() => call('runPodSandbox', { config: badPod }), /seccomp.*is a symlink/);
  });

  it('refuses to start a container whose mount host path was swapped to a symlink after CreateContainer', async () => {
    const real = join(h.root, 'swap', 'real');
    await mkdir(real, { recursive: true });
    await writeFile(join(real, 'marker'), 'pinned');
    await symlink(real, join(h.root, 'swap', 'via-link'));
    // Resolved once: the spec names the real directory, not the link.
    const { containerId } = await create({
      metadata: { name: 'swap-ok', attempt: 0 },
      mounts: [{ containerPath: '/data', hostPath: join(h.root, 'swap', 'via-link') }],
    });
    const record = await unaryCall<{ container: { spec: { value: Buffer } } }>(h.api.containers, 'Get', {
      id: containerId,
    });
    const spec = JSON.parse(record.container.spec.value.toString()) as {
      mounts: Array<{ destination: string; source: string }>;
    };
    assert.equal(spec.mounts.find((m) => m.destination === '/data')?.source, real);
    await call('startContainer', { containerId });
    const seen = await call<{ stdout: Buffer }>('execSync', { containerId, cmd: ['cat', '/data/marker'], timeout: 5 });
    assert.equal(seen.stdout.toString(), 'pinned');
    await call('removeContainer', { containerId });

    const { containerId: swapped } = await create({
      metadata: { name: 'swap-attack', attempt: 0 },
      mounts: [{ containerPath: '/data', hostPath: real }],
    });
    await rename(real, `${real}.moved`);
    await symlink('/', real);
    const field = /^config\.mounts\[0\]\.host_path: .*is a symlink/;
    await refusedWithoutSideEffect(() => call('startContainer', { containerId: swapped }), field);
    const status = await call<{ status: { state: string } }>('containerStatus', { containerId: swapped });
    assert.equal(status.status.state, 'CONTAINER_CREATED', 'no task was made');
    // Another directory put in its place is not the one CreateContainer resolved either.
    await rm(real);
    await mkdir(real);
    await refusedWithoutSideEffect(
      () => call('startContainer', { containerId: swapped }),
      /^config\.mounts\[0\]\.host_path: .*was replaced/,
    );
    await call('removeContainer', { containerId: swapped });
    assert.equal(existsSync(join(h.root, 'containers', swapped)), false);

    // A host path that did not exist is made by CreateContainer and pinned as made: swapped
    // for a symlink before the start, it is refused too.
    const later = join(h.root, 'swap', 'later');
    const { containerId: planted } = await create({
      metadata: { name: 'swap-later', attempt: 0 },
      mounts: [{ containerPath: '/data', hostPath: later }],
    });
    await rm(later, { recursive: true });
    await symlink('/', later);
    await refusedWithoutSideEffect(
      () => call('startContainer', { containerId: planted }),
      /^config\.mounts\[0\]\.host_path: .*is a symlink/,
    );
    await call('removeContainer', { containerId: planted });
  });
});
