import { encodeRuncOptions } from '../../src/adapters/containerd/runc-options.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageVolumeDirs } from '../../src/adapters/oci/image-volumes.js';
import { containerLogPath } from '../../src/adapters/oci/log-path.js';
import { mergeEnv, processCwd } from '../../src/adapters/oci/process.js';
import { cgroupsPath, oomScoreAdj } from '../../src/adapters/oci/resources.js';
import { parseSeccompProfile } from '../../src/adapters/oci/seccomp.js';
import {
  allowsUnconditionally,
  CLONE_NAMESPACE_FLAGS,
  defaultSeccompProfile,
} from '../../src/adapters/oci/seccomp-default.js';
import { memberGroups, parseGroup, parsePasswd, resolveUser } from '../../src/adapters/oci/user.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

const naming = (field: string) => (err: unknown) => err instanceof InvalidArgumentError && err.field === field;

describe('container log path', () => {
  it('joins the log directory and the log path', () => {
    assert.equal(containerLogPath('/var/log/pods/p', 'web/0.log'), '/var/log/pods/p/web/0.log');
  });

  it('is empty when either side is unset', () => {
    assert.equal(containerLogPath('', 'web/0.log'), '');
    assert.equal(containerLogPath('/var/log/pods/p', ''), '');
  });

  it('refuses an absolute log path: the CRI defines it as relative to the directory', () => {
    assert.throws(() => containerLogPath('/var/log/pods/p', '/web/0.log'), naming('config.log_path'));
    assert.throws(() => containerLogPath('/var/log/pods/p', '/etc/cron.d/x'), naming('config.log_path'));
  });

  it('refuses a path that escapes the log directory', () => {
    assert.throws(() => containerLogPath('/var/log/pods/p', '../../../etc/shadow'), naming('config.log_path'));
    assert.throws(() => containerLogPath('/var/log/pods/p', 'web/../../q/0.log'), naming('config.log_path'));
    assert.throws(() => containerLogPath('/var/log/pods/p', '.'), naming('config.log_path'));
  });

  it('refuses NUL and control bytes', () => {
    assert.throws(() => containerLogPath('/var/log/pods/p', 'web/0.log\u0000.txt'), naming('config.log_path'));
    assert.throws(() => containerLogPath('/var/log/pods/p', 'web/\n0.log'), naming('config.log_path'));
    assert.throws(() => containerLogPath('/var/log/pods/p', 'web/\u007f.log'), naming('config.log_path'));
  });
});

describe('image volume dirs', () => {
  const ROOT = '/var/lib/cri-ledger/containers/c1';

  it('gives each volume a stable directory under the container root', () => {
    const first = imageVolumeDirs({ '/data': {}, '/cache/': {} }, [], ROOT, false);
    assert.deepEqual(
      first.map((d) => d.containerPath),
      ['/data', '/cache'],
    );
    for (const d of first) assert.match(d.hostPath, /^\/var\/lib\/cri-ledger\/containers\/c1\/volumes\/[0-9a-f]{64}$/);
    assert.notEqual(first[0]?.hostPath, first[1]?.hostPath);
    assert.deepEqual(imageVolumeDirs(['/data', '/cache/'], [], ROOT, false), first);
  });

  it('skips a volume a CRI mount targets, and all of them when told to ignore them', () => {
    assert.deepEqual(
      imageVolumeDirs(['/data', '/logs'], [{ containerPath: '/data/' }], ROOT, false).map((d) => d.containerPath),
      ['/logs'],
    );
    assert.deepEqual(imageVolumeDirs(['/data'], [], ROOT, true), []);
  });

  it('refuses a volume path with .. or one that is not absolute', () => {
    assert.throws(() => imageVolumeDirs(['/data/../../etc'], [], ROOT, false), InvalidArgumentError);
    assert.throws(() => imageVolumeDirs(['data'], [], ROOT, false), InvalidArgumentError);
  });
});

describe('working dir', () => {
  it('takes the request, else the image, else /', () => {
    assert.equal(processCwd({ workingDir: '/work' }, { workingDir: '/srv' }), '/work');
    assert.equal(processCwd({ workingDir: '' }, { workingDir: '/srv' }), '/srv');
    assert.equal(processCwd({ workingDir: '' }, {}), '/');
  });

  it('refuses a relative one before anything is written (runc would refuse it only at StartContainer)', () => {
    assert.throws(
      () => processCwd({ workingDir: 'work' }, {}),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === 'config.working_dir',
    );
    assert.throws(() => processCwd({ workingDir: '/a/\nb' }, {}), InvalidArgumentError);
    assert.throws(() => processCwd({ workingDir: '' }, { workingDir: 'srv' }), /WorkingDir/);
  });
});

describe('env merge', () => {
  it('lets a later list override a key in place and unset one with a bare key', () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4', 'A']), ['B=3', 'C=4']);
  });

  it('keeps values that contain =', () => {
    assert.deepEqual(mergeEnv(['OPTS=a=b'], ['X=']), ['OPTS=a=b', 'X=']);
  });
});

describe('passwd and group files', () => {
  const passwd =
    '# comment\nroot:x:0:0::/root:/bin/sh\nbroken-line\nbad:x:abc:1::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n';
  const group = 'root:x:0:\nstaff:x:50:app, other\napp:x:1000:app\n';

  it('skips comments and malformed lines', () => {
    assert.deepEqual(
      parsePasswd(passwd).map((p) => p.name),
      ['root', 'app'],
    );
    assert.deepEqual(parseGroup(group).find((g) => g.name === 'staff')?.members, ['app', 'other']);
  });

  it("lists a user's supplementary groups but not its own group", () => {
    assert.deepEqual(memberGroups('app', group), [50]);
    assert.deepEqual(memberGroups(undefined, group), []);
  });

  it('resolves uid:group by group name, and refuses an unknown group', () => {
    assert.deepEqual(resolveUser({ userstr: '1000:staff', field: 'f' }, passwd, group), {
      uid: 1000,
      gid: 50,
      name: 'app',
    });
    assert.throws(() => resolveUser({ userstr: '1000:nogroup', field: 'f' }, passwd, group), naming('f'));
    assert.throws(() => resolveUser({ userstr: 'a:b:c', field: 'f' }, passwd, group), naming('f'));
  });

  it('refuses a user name when the image has no /etc/passwd, but accepts a uid', () => {
    assert.throws(() => resolveUser({ userstr: 'app', field: 'f' }, undefined, undefined), naming('f'));
    assert.deepEqual(resolveUser({ userstr: '7', field: 'f' }, undefined, undefined), { uid: 7, gid: 0 });
  });
});

describe('default seccomp profile', () => {
  const plain = defaultSeccompProfile(['CAP_CHOWN'], 'x64');

  it('denies by default with EPERM on the host architectures', () => {
    assert.equal(plain.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(plain.defaultErrnoRet, 1);
    assert.deepEqual(plain.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    assert.deepEqual(defaultSeccompProfile([], 'arm64').architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  });

  it('blocks what the well-known default blocks for an ordinary container', () => {
    for (const call of [
      'mount',
      'umount2',
      'unshare',
      'setns',
      'reboot',
      'kexec_load',
      'init_module',
      'ptrace',
      'bpf',
      'keyctl',
      'add_key',
      'userfaultfd',
      'open_by_handle_at',
      'chroot',
      'settimeofday',
    ]) {
      assert.ok(!allowsUnconditionally(plain, call), call);
    }
    for (const call of ['read', 'execve', 'openat', 'socket', 'arch_prctl', 'statx', 'clock_gettime'])
      assert.ok(allowsUnconditionally(plain, call), call);
  });

  it('allows clone only without namespace flags, and makes clone3 fall back, without CAP_SYS_ADMIN', () => {
    const clone = plain.syscalls?.find((s) => s.names.includes('clone'));
    assert.deepEqual(clone?.args, [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    assert.deepEqual(
      plain.syscalls?.find((s) => s.names.includes('clone3')),
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
    );
    const admin = defaultSeccompProfile(['CAP_SYS_ADMIN'], 'x64');
    assert.ok(
      allowsUnconditionally(admin, 'clone') &&
        allowsUnconditionally(admin, 'clone3') &&
        allowsUnconditionally(admin, 'mount'),
    );
  });

  it('opens each gated syscall with its capability', () => {
    assert.ok(allowsUnconditionally(defaultSeccompProfile(['CAP_SYS_PTRACE'], 'x64'), 'ptrace'));
    assert.ok(allowsUnconditionally(defaultSeccompProfile(['CAP_SYS_CHROOT'], 'x64'), 'chroot'));
    assert.ok(allowsUnconditionally(defaultSeccompProfile(['CAP_SYS_TIME'], 'x64'), 'settimeofday'));
  });

  it('allows only harmless personality values', () => {
    const personalities = plain.syscalls?.filter((s) => s.names.includes('personality')).map((s) => s.args?.[0]?.value);
    assert.deepEqual(personalities, [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]);
  });
});

describe('localhost seccomp profiles', () => {
  it('refuses a profile without a default action', () => {
    assert.throws(() => parseSeccompProfile({ syscalls: [] }, 'f'), naming('f'));
    assert.throws(() => parseSeccompProfile([], 'f'), naming('f'));
    assert.throws(
      () => parseSeccompProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ action: 'SCMP_ACT_ALLOW' }] }, 'f'),
      naming('f'),
    );
  });
});

describe('cgroups path and oom score', () => {
  it('falls back to /<namespace>/<id> without a cgroup parent, system.slice with the systemd driver', () => {
    assert.equal(cgroupsPath('', 'abc', 'cri-ledger'), '/cri-ledger/abc');
    assert.equal(cgroupsPath('', 'abc', 'cri-ledger', 'f', 'systemd'), 'system.slice:cri-ledger:abc');
    assert.equal(
      cgroupsPath('kubepods-besteffort-pod1.slice', 'abc', 'cri-ledger', 'f', 'systemd'),
      'kubepods-besteffort-pod1.slice:cri-ledger:abc',
    );
  });

  it('refuses a cgroup parent with ".." or a control byte, naming the field', () => {
    assert.equal(cgroupsPath('/kubepods/burstable/pod1', 'abc', 'cri-ledger'), '/kubepods/burstable/pod1/abc');
    assert.throws(
      () => cgroupsPath('/kubepods/../../system.slice', 'abc', 'cri-ledger', 'config.linux.cgroup_parent'),
      naming('config.linux.cgroup_parent'),
    );
    assert.throws(
      () => cgroupsPath('/kubepods\n', 'abc', 'cri-ledger', 'config.linux.cgroup_parent'),
      naming('config.linux.cgroup_parent'),
    );
  });

  it('clamps only downward moves', () => {
    assert.equal(oomScoreAdj(-998, true, -500, 'f'), -500);
    assert.equal(oomScoreAdj(100, true, -500, 'f'), 100);
    assert.equal(oomScoreAdj(-998, false, -500, 'f'), -998);
  });
});

describe("runc's shim options", () => {
  it('encodes root, binary name and the systemd cgroup driver with upstream field numbers', () => {
    // binary_name = 6 (0x32), root = 7 (0x3a), systemd_cgroup = 9 as a varint (0x48).
    assert.deepEqual(
      [...encodeRuncOptions({ binaryName: 'runc', root: '/r', systemdCgroup: true })],
      [0x32, 4, ...Buffer.from('runc'), 0x3a, 2, ...Buffer.from('/r'), 0x48, 1],
    );
    assert.deepEqual([...encodeRuncOptions({ root: '/r', systemdCgroup: false })], [0x3a, 2, ...Buffer.from('/r')]);
  });
});
