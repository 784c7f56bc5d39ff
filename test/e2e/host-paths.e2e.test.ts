import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { decodeEvent, type LedgerEvent } from '../../src/domain/events.js';
import { runCli } from '../support/cli.js';
import { ledgerHead, startCriHarness, type CriHarness } from '../support/cri-harness.js';
import { removeAllPods } from '../support/pods.js';

/*
 * A mount whose host path does not exist, on real containerd: CreateContainer makes it
 * (and its missing parents) as directories, 0755, as containerd's CRI and CRI-O do, and
 * records each in the container's stream (HostPathCreated); the container starts with
 * it mounted. What was refused before stays refused, before any event: a relative path,
 * `..`, and a missing path under a symlinked parent (which would be made where the
 * symlink leads).
 */

describe('a missing mount host path', () => {
  let h: CriHarness;
  let podId = '';
  const pod = {
    metadata: { name: 'hostpaths', uid: 'uid-hostpaths', namespace: 'default', attempt: 0 },
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  const create = (name: string, hostPath: string) =>
    h.call<{ containerId: string }>('createContainer', {
      podSandboxId: podId,
      sandboxConfig: pod,
      config: {
        metadata: { name, attempt: 0 },
        image: { image: 'busybox' },
        command: ['sleep', '3600'],
        mounts: [{ containerPath: '/data', hostPath }],
      },
    });
  const events = async (filter: { types?: string[]; streams?: string[] } = {}): Promise<LedgerEvent[]> => {
    const client = LedgerClient.connect(h.socket);
    try {
      const out: LedgerEvent[] = [];
      for await (const record of client.readEvents(filter as never))
        out.push(decodeEvent(record.json, Number(record.seq)));
      return out;
    } finally {
      client.close();
    }
  };
  const head = (): Promise<number> => ledgerHead(h.socket);

  before(async () => {
    h = await startCriHarness({ prefix: 'cri-ledger-e2e-hostpaths-' });
    podId = (await h.call<{ podSandboxId: string }>('runPodSandbox', { config: pod })).podSandboxId;
  });
  after(async () => {
    if (h) await removeAllPods(h);
    await h?.cleanup();
  });

  it('is made as a directory, 0755 with its missing parents, recorded, and the container starts with it mounted', async () => {
    const base = join(h.root, 'kubelet-pods');
    const target = join(base, 'volumes', 'cache');
    assert.equal(existsSync(base), false);
    const { containerId } = await create('made', target);
    for (const dir of [base, join(base, 'volumes'), target]) {
      assert.ok(statSync(dir).isDirectory(), `${dir} exists`);
      assert.equal(statSync(dir).mode & 0o7777, 0o755, `${dir} is 0755`);
    }
    const stream = await events({ streams: [`container-${containerId}`] });
    assert.deepEqual(
      stream.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'HostPathCreated', 'SnapshotPrepared', 'ContainerCreated'],
    );
    assert.deepEqual(stream[2]!.data, {
      field: 'config.mounts[0].host_path',
      path: target,
      created: [base, join(base, 'volumes'), target],
      mode: '0755',
    });

    await h.call('startContainer', { containerId });
    const status = await h.call<{ status: { state: string } }>('containerStatus', { containerId });
    assert.equal(status.status.state, 'CONTAINER_RUNNING');
    await h.call('execSync', { containerId, cmd: ['sh', '-c', 'echo from-the-container > /data/written'], timeout: 5 });
    assert.equal(await readFile(join(target, 'written'), 'utf8'), 'from-the-container\n');

    // The audit trail, as an operator reads it.
    const cli = await runCli(['events', '--socket', h.socket, '--type', 'HostPathCreated']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(
      cli.stdout,
      new RegExp(`made ${base}, ${base}/volumes, ${target} \\(mode 0755\\) for config\\.mounts\\[0\\]\\.host_path`),
    );

    // Removing the container leaves the directory (and what the container wrote), as containerd does.
    await h.call('removeContainer', { containerId });
    assert.ok(existsSync(join(target, 'written')));
  });

  it('is used as it is when it exists by then: a second container records nothing', async () => {
    const target = join(h.root, 'kubelet-pods', 'volumes', 'cache');
    const { containerId } = await create('again', target);
    const stream = await events({ streams: [`container-${containerId}`] });
    assert.deepEqual(
      stream.map((e) => e.type),
      ['NameReserved', 'SpecGenerated', 'SnapshotPrepared', 'ContainerCreated'],
    );
    await h.call('removeContainer', { containerId });
  });

  it('is still refused, before any event or directory, when relative, holding "..", or under a symlinked parent or a file', async () => {
    const real = join(h.root, 'elsewhere');
    await mkdir(real);
    await symlink(real, join(h.root, 'linked'));
    await writeFile(join(h.root, 'plain-file'), '');
    const refusals: Array<[string, RegExp]> = [
      ['relative/new', /^config\.mounts\[0\]\.host_path: "relative\/new" is not absolute/],
      [`${h.root}/kubelet-pods/../escape`, /^config\.mounts\[0\]\.host_path: .*"\.\." component/],
      [
        join(h.root, 'linked', 'new'),
        /^config\.mounts\[0\]\.host_path: .* does not exist and cannot be made: .*linked is a symlink/,
      ],
      [
        join(h.root, 'plain-file', 'new'),
        /^config\.mounts\[0\]\.host_path: .* does not exist and cannot be made: .*plain-file is not a directory/,
      ],
    ];
    for (const [hostPath, field] of refusals) {
      const before = await head();
      const e = (await create('refused', hostPath).then(
        () => assert.fail(`created with host path ${hostPath}`),
        (error: ServiceError) => error,
      )) as ServiceError;
      assert.equal(e.code, Status.INVALID_ARGUMENT, `${Status[e.code]}: ${e.details}`);
      assert.match(e.details, field);
      assert.equal(await head(), before, 'no event was written');
    }
    assert.equal(existsSync(join(real, 'new')), false, 'nothing was made through the symlink');
    assert.equal(existsSync(join(h.root, 'escape')), false);
    assert.equal((await events({ types: ['HostPathCreated'] })).length, 1, 'only the first test made a host path');
    // The log with the new event type keeps its invariants, and reads back whole.
    const verify = await runCli(['verify', '--socket', h.socket]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
