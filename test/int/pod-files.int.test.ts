import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HostPodFiles, resolvConf } from '../../src/adapters/fs/pod-files.js';
import { hexId } from '../support/fixtures.js';

describe('pod files on the host', () => {
  let dir: string;
  let files: HostPodFiles;
  const id = hexId('pod-files');
  const mounted = async (path: string) =>
    (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === path);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-ledger-podfiles-'));
    await mkdir(join(dir, 'etc'));
    await writeFile(join(dir, 'etc', 'hosts'), '127.0.0.1 localhost\n');
    await writeFile(join(dir, 'etc', 'resolv.conf'), 'nameserver 192.0.2.53\n');
    files = new HostPodFiles({ root: join(dir, 'root'), stateDir: join(dir, 'state'), hostEtc: join(dir, 'etc') });
  });

  after(async () => {
    await files.remove(id).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('writes hostname, hosts and resolv.conf from the DNS config, and mounts a tmpfs /dev/shm', async () => {
    await files.create(id, {
      hostname: 'web-0',
      dns: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
      hostIpc: false,
    });
    const f = files.filesFor(id);
    assert.equal(await readFile(f.hostname, 'utf8'), 'web-0\n');
    assert.equal(await readFile(f.hosts, 'utf8'), '127.0.0.1 localhost\n');
    assert.equal(
      await readFile(f.resolvConf, 'utf8'),
      'nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n',
    );
    assert.ok(await mounted(f.devShm), 'shm is a mount point');
    assert.equal((await stat(f.devShm)).mode & 0o7777, 0o1777);
    // A retry of the step (after a crash, say) finds the mount and adds no second one.
    await files.create(id, { hostname: 'web-0', dns: null, hostIpc: false });
    const count = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => l.split(' ')[4] === f.devShm).length;
    assert.equal(count, 1);
  });

  it('copies the host resolv.conf when the pod gives no DNS config, and uses the host /dev/shm with host IPC', async () => {
    const other = hexId('pod-files-2');
    try {
      await files.create(other, { hostname: 'h', dns: null, hostIpc: true });
      assert.equal(await readFile(files.filesFor(other).resolvConf, 'utf8'), 'nameserver 192.0.2.53\n');
      assert.equal(files.filesFor(other, true).devShm, '/dev/shm');
      assert.equal(await mounted(files.filesFor(other).devShm), false);
    } finally {
      await files.remove(other);
    }
  });

  it('unmounts and removes everything, and removing again succeeds', async () => {
    const f = files.filesFor(id);
    await files.remove(id);
    await files.remove(id);
    assert.equal(await mounted(f.devShm), false);
    await assert.rejects(stat(f.hostname), { code: 'ENOENT' });
  });

  it('formats resolv.conf from a DNS config', () => {
    assert.equal(
      resolvConf({ servers: ['1.1.1.1', '8.8.8.8'], searches: [], options: [] }),
      'nameserver 1.1.1.1\nnameserver 8.8.8.8\n',
    );
  });
});
