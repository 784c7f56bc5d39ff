import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContainerConfig__Output } from '../../src/adapters/cri/generated/runtime/v1/ContainerConfig.js';
import type { LinuxContainerResources__Output } from '../../src/adapters/cri/generated/runtime/v1/LinuxContainerResources.js';
import type { LinuxContainerSecurityContext__Output } from '../../src/adapters/cri/generated/runtime/v1/LinuxContainerSecurityContext.js';
import type { LinuxSandboxSecurityContext__Output } from '../../src/adapters/cri/generated/runtime/v1/LinuxSandboxSecurityContext.js';
import type { Mount__Output } from '../../src/adapters/cri/generated/runtime/v1/Mount.js';
import type { PodSandboxConfig__Output } from '../../src/adapters/cri/generated/runtime/v1/PodSandboxConfig.js';
import { buildContainerSpec } from '../../src/adapters/oci/container-spec.js';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, heldCapabilities } from '../../src/adapters/oci/capabilities.js';
import type { OciSpec } from '../../src/adapters/oci/oci-spec.js';
import { buildSandboxSpec } from '../../src/adapters/oci/sandbox-spec.js';
import { allowsUnconditionally } from '../../src/adapters/oci/seccomp-default.js';
import { DEFAULT_MASKED_PATHS } from '../../src/adapters/oci/security.js';
import type {
  ContainerSpecInput,
  HostDevice,
  SandboxSpecInput,
  SpecResult,
} from '../../src/adapters/oci/spec-input.js';
import { InvalidArgumentError } from '../../src/domain/errors.js';

// ---- fixtures: a kubelet-shaped request in a pod-network sandbox on a cgroup v1 host ----

const CONTAINER_ID = 'c'.repeat(64);
const SANDBOX_ID = 's'.repeat(64);
const SANDBOX_PID = 4242;

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1::/:/bin/false',
  'app:x:1000:1000::/home/app:/bin/sh',
  'www:x:33:33::/var/www:/bin/false',
].join('\n');
const GROUP = [
  'root:x:0:',
  'wheel:x:10:root',
  'app:x:1000:app',
  'audio:x:29:app,www',
  'video:x:44:app',
  'www:x:33:',
].join('\n');

function securityContext(
  patch: Partial<LinuxContainerSecurityContext__Output> = {},
): LinuxContainerSecurityContext__Output {
  return {
    capabilities: null,
    privileged: false,
    namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '', usernsOptions: null },
    selinuxOptions: null,
    runAsUser: null,
    runAsUsername: '',
    readonlyRootfs: false,
    supplementalGroups: [],
    apparmorProfile: '',
    seccompProfilePath: '',
    noNewPrivs: false,
    runAsGroup: null,
    maskedPaths: [],
    readonlyPaths: [],
    seccomp: null,
    apparmor: null,
    supplementalGroupsPolicy: 'Merge',
    ...patch,
  };
}

function resources(patch: Partial<LinuxContainerResources__Output> = {}): LinuxContainerResources__Output {
  return {
    cpuPeriod: '0',
    cpuQuota: '0',
    cpuShares: '0',
    memoryLimitInBytes: '0',
    oomScoreAdj: '0',
    cpusetCpus: '',
    cpusetMems: '',
    hugepageLimits: [],
    unified: {},
    memorySwapLimitInBytes: '0',
    ...patch,
  };
}

function mount(containerPath: string, hostPath: string, patch: Partial<Mount__Output> = {}): Mount__Output {
  return {
    containerPath,
    hostPath,
    readonly: false,
    selinuxRelabel: false,
    propagation: 'PROPAGATION_PRIVATE',
    uidMappings: [],
    gidMappings: [],
    recursiveReadOnly: false,
    image: null,
    imageSubPath: '',
    ...patch,
  };
}

function containerConfig(
  patch: Partial<ContainerConfig__Output> = {},
  sc?: Partial<LinuxContainerSecurityContext__Output>,
  res?: Partial<LinuxContainerResources__Output>,
): ContainerConfig__Output {
  return {
    metadata: { name: 'web', attempt: 0 },
    image: { image: 'busybox:latest', annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' },
    command: [],
    args: [],
    workingDir: '',
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: { 'io.kubernetes.container.hash': 'abc123' },
    logPath: 'web/0.log',
    stdin: false,
    stdinOnce: false,
    tty: false,
    linux: { resources: res === undefined ? null : resources(res), securityContext: securityContext(sc) },
    windows: null,
    CDIDevices: [],
    stopSignal: 'RUNTIME_DEFAULT',
    ...patch,
  };
}

function sandboxSecurity(
  patch: Partial<LinuxSandboxSecurityContext__Output> = {},
): LinuxSandboxSecurityContext__Output {
  return {
    namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '', usernsOptions: null },
    selinuxOptions: null,
    runAsUser: null,
    readonlyRootfs: false,
    supplementalGroups: [],
    privileged: false,
    seccompProfilePath: '',
    runAsGroup: null,
    seccomp: null,
    apparmor: null,
    supplementalGroupsPolicy: 'Merge',
    ...patch,
  };
}

function sandboxConfig(
  sc: Partial<LinuxSandboxSecurityContext__Output> = {},
  patch: Partial<PodSandboxConfig__Output> = {},
): PodSandboxConfig__Output {
  return {
    metadata: { name: 'nginx', uid: 'pod-uid-1', namespace: 'default', attempt: 0 },
    hostname: 'nginx-pod',
    logDirectory: '/var/log/pods/default_nginx_pod-uid-1',
    dnsConfig: null,
    portMappings: [],
    labels: {},
    annotations: { 'kubernetes.io/config.source': 'api' },
    linux: {
      cgroupParent: '/kubepods/besteffort/podpod-uid-1',
      securityContext: sandboxSecurity(sc),
      sysctls: { 'net.ipv4.ip_forward': '1' },
      overhead: null,
      resources: null,
    },
    windows: null,
    ...patch,
  };
}

const FILES = {
  hostname: '/run/sb/hostname',
  hosts: '/run/sb/hosts',
  resolvConf: '/run/sb/resolv.conf',
  devShm: '/run/sb/shm',
};
const HOST = {
  arch: 'x64',
  cgroupVersion: 1 as const,
  apparmor: false,
  selinux: false,
  seccomp: true,
  swapControllerAvailable: true,
  hugetlbControllerAvailable: true,
  heldCapabilities: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_KILL'],
  devices: [{ path: '/dev/sda', type: 'b' as const, major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 }],
  currentOomScoreAdj: -500,
  hostname: 'node-1',
};

type Input = Omit<ContainerSpecInput, 'host' | 'options'> & {
  host: Partial<ContainerSpecInput['host']>;
  options: Partial<ContainerSpecInput['options']>;
};

function input(config: ContainerConfig__Output, patch: Partial<Input> = {}): ContainerSpecInput {
  const base: ContainerSpecInput = {
    containerId: CONTAINER_ID,
    sandboxId: SANDBOX_ID,
    config,
    sandboxConfig: sandboxConfig(),
    image: {
      name: 'docker.io/library/busybox:latest',
      config: {
        entrypoint: ['/entry'],
        cmd: ['serve', '--port=80'],
        env: ['PATH=/bin', 'MODE=image'],
        workingDir: '/srv',
      },
      passwd: PASSWD,
      group: GROUP,
    },
    sandbox: { pid: SANDBOX_PID, netnsPath: '/run/netns/cni-1', files: FILES },
    imageVolumes: [],
    hostPropagation: () => ({ shared: false, slave: false }),
    deviceInfo: () => [],
    loadLocalhostProfile: () => {
      throw new Error('no profile');
    },
    host: HOST,
    options: { restrictOomScoreAdj: false, containerdNamespace: 'cri-ledger' },
  };
  return { ...base, ...patch, host: { ...HOST, ...patch.host }, options: { ...base.options, ...patch.options } };
}

/** given a request, when the spec is built, then ... */
function given(config: ContainerConfig__Output, patch: Partial<Input> = {}) {
  return {
    result: (): SpecResult => buildContainerSpec(input(config, patch)),
    spec: (): OciSpec => buildContainerSpec(input(config, patch)).spec,
    throwsNaming(field: string | RegExp): void {
      assert.throws(
        () => buildContainerSpec(input(config, patch)),
        (err: unknown) =>
          err instanceof InvalidArgumentError &&
          (typeof field === 'string' ? err.field === field : field.test(err.field)),
      );
    },
  };
}

// ---- process ----

describe('process args', () => {
  it('runs the image entrypoint with its cmd when the request names neither', () => {
    assert.deepEqual(given(containerConfig()).spec().process.args, ['/entry', 'serve', '--port=80']);
  });

  it('replaces the cmd with args and keeps the entrypoint', () => {
    assert.deepEqual(given(containerConfig({ args: ['x'] })).spec().process.args, ['/entry', 'x']);
  });

  it('drops the image cmd when command is given without args', () => {
    assert.deepEqual(given(containerConfig({ command: ['/bin/sh'] })).spec().process.args, ['/bin/sh']);
  });

  it('uses command and args together, ignoring the image', () => {
    assert.deepEqual(given(containerConfig({ command: ['/bin/sh'], args: ['-c', 'true'] })).spec().process.args, [
      '/bin/sh',
      '-c',
      'true',
    ]);
  });

  it('treats ENTRYPOINT [""] as no entrypoint', () => {
    const spec = given(containerConfig(), { image: { name: 'i', config: { entrypoint: [''], cmd: ['sh'] } } }).spec();
    assert.deepEqual(spec.process.args, ['sh']);
  });

  it('refuses a container with nothing to run', () => {
    given(containerConfig(), { image: { name: 'i', config: {} } }).throwsNaming('config.command');
  });
});

describe('process env, cwd and terminal', () => {
  it('merges image env and request envs, the request winning per key in the first position', () => {
    const config = containerConfig({
      envs: [
        { key: 'MODE', value: 'pod' },
        { key: 'EXTRA', value: '1' },
      ],
    });
    assert.deepEqual(given(config).spec().process.env, ['PATH=/bin', 'HOSTNAME=nginx-pod', 'MODE=pod', 'EXTRA=1']);
  });

  it('takes HOSTNAME from the node when the sandbox has none', () => {
    const spec = given(containerConfig(), { sandboxConfig: sandboxConfig({}, { hostname: '' }) }).spec();
    assert.ok(spec.process.env.includes('HOSTNAME=node-1'));
  });

  it('uses the working dir of the request, else the image, else /', () => {
    assert.equal(given(containerConfig({ workingDir: '/work' })).spec().process.cwd, '/work');
    assert.equal(given(containerConfig()).spec().process.cwd, '/srv');
    assert.equal(given(containerConfig(), { image: { name: 'i', config: { cmd: ['x'] } } }).spec().process.cwd, '/');
  });

  it('gives a terminal only when tty is set', () => {
    assert.equal(given(containerConfig({ tty: true })).spec().process.terminal, true);
    assert.equal(given(containerConfig()).spec().process.terminal, false);
  });
});

// ---- user ----

describe('user', () => {
  it('runs as root with gid 0 when nobody names a user', () => {
    assert.deepEqual(given(containerConfig()).spec().process.user, { uid: 0, gid: 0, additionalGids: [0, 10] });
  });

  it("takes run_as_user and its primary group and groups from the image's files", () => {
    const user = given(containerConfig({}, { runAsUser: { value: '1000' } })).spec().process.user;
    assert.deepEqual(user, { uid: 1000, gid: 1000, additionalGids: [29, 44, 1000] });
  });

  it('runs an unknown uid with gid 0, as docker does', () => {
    assert.deepEqual(given(containerConfig({}, { runAsUser: { value: '4321' } })).spec().process.user, {
      uid: 4321,
      gid: 0,
      additionalGids: [0],
    });
  });

  it("resolves run_as_username from the image's /etc/passwd", () => {
    const user = given(containerConfig({}, { runAsUsername: 'www' })).spec().process.user;
    assert.deepEqual(user, { uid: 33, gid: 33, additionalGids: [29, 33] });
  });

  it('refuses a username the image does not know', () => {
    given(containerConfig({}, { runAsUsername: 'ghost' })).throwsNaming(
      'config.linux.security_context.run_as_username',
    );
  });

  it('uses run_as_group as the primary group', () => {
    const user = given(containerConfig({}, { runAsUser: { value: '1000' }, runAsGroup: { value: '5' } })).spec().process
      .user;
    assert.equal(user.gid, 5);
    assert.deepEqual(user.additionalGids, [5, 29, 44]);
  });

  it('refuses run_as_group without a user', () => {
    given(containerConfig({}, { runAsGroup: { value: '5' } })).throwsNaming(
      'config.linux.security_context.run_as_group',
    );
  });

  it("falls back to the image's USER in its name:group form", () => {
    const image = { name: 'i', config: { cmd: ['x'], user: 'app:video' }, passwd: PASSWD, group: GROUP };
    const user = given(containerConfig(), { image }).spec().process.user;
    assert.equal(user.uid, 1000);
    assert.equal(user.gid, 44);
  });

  it("prefers the request's user over the image's USER", () => {
    const image = { name: 'i', config: { cmd: ['x'], user: 'app' }, passwd: PASSWD, group: GROUP };
    assert.equal(given(containerConfig({}, { runAsUser: { value: '33' } }), { image }).spec().process.user.uid, 33);
  });

  it('adds the configured supplemental groups, sorted and without duplicates', () => {
    const user = given(containerConfig({}, { runAsUser: { value: '1000' }, supplementalGroups: ['2000', '29'] })).spec()
      .process.user;
    assert.deepEqual(user.additionalGids, [29, 44, 1000, 2000]);
  });
});

// ---- security ----

describe('capabilities', () => {
  it('grants the default set when the request says nothing', () => {
    const caps = given(containerConfig()).spec().process.capabilities;
    assert.deepEqual(caps.bounding, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(caps.effective, caps.bounding);
    assert.equal(caps.ambient, undefined);
  });

  it('adds and drops individual capabilities', () => {
    const sc = {
      capabilities: {
        addCapabilities: ['NET_ADMIN'],
        dropCapabilities: ['chown', 'CAP_KILL'],
        addAmbientCapabilities: [],
      },
    };
    const caps = given(containerConfig({}, sc)).spec().process.capabilities.bounding;
    assert.ok(caps.includes('CAP_NET_ADMIN'));
    assert.ok(!caps.includes('CAP_CHOWN'));
    assert.ok(!caps.includes('CAP_KILL'));
  });

  it('drops ALL and then adds back only what is named', () => {
    const sc = {
      capabilities: { addCapabilities: ['NET_BIND_SERVICE'], dropCapabilities: ['ALL'], addAmbientCapabilities: [] },
    };
    assert.deepEqual(given(containerConfig({}, sc)).spec().process.capabilities.bounding, ['CAP_NET_BIND_SERVICE']);
  });

  it('adds ALL as the set the service holds, minus what is dropped', () => {
    const sc = {
      capabilities: { addCapabilities: ['all'], dropCapabilities: ['SYS_ADMIN'], addAmbientCapabilities: [] },
    };
    assert.deepEqual(given(containerConfig({}, sc)).spec().process.capabilities.bounding, [
      'CAP_CHOWN',
      'CAP_NET_ADMIN',
      'CAP_KILL',
    ]);
  });

  it('refuses a capability Linux does not have', () => {
    const sc = { capabilities: { addCapabilities: ['FLY'], dropCapabilities: [], addAmbientCapabilities: [] } };
    given(containerConfig({}, sc)).throwsNaming('config.linux.security_context.capabilities.add_capabilities');
  });
});

describe('capabilities the service holds', () => {
  const status = (bnd: string, eff: string) =>
    `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${eff}\nCapEff:\t${eff}\nCapBnd:\t${bnd}\nCapAmb:\t0000000000000000\n`;

  it('reads them from CapBnd and CapEff: a host without CAP_SYS_RESOURCE (bit 24) gives everything else', () => {
    const held = heldCapabilities(status('000001fffeffffff', '000001fffeffffff'))!;
    assert.equal(held.length, ALL_CAPABILITIES.length - 1);
    assert.equal(held.includes('CAP_SYS_RESOURCE'), false);
    assert.deepEqual(held.slice(22, 25), ['CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_TIME']);
  });

  it('takes only what both sets hold, ignores bits it has no name for, and says when it cannot tell', () => {
    assert.deepEqual(heldCapabilities(status('0000000000000003', '0000000000000006')), ['CAP_DAC_OVERRIDE']);
    assert.deepEqual(heldCapabilities(status('ffffffffffffffff', '0000060000000001')), ['CAP_CHOWN']);
    assert.deepEqual(heldCapabilities(status('0000000000000000', '0000000000000000')), []);
    assert.equal(heldCapabilities('Name:\tnode\n'), undefined);
  });
});

describe('privileged', () => {
  const privileged = () =>
    given(containerConfig({}, { privileged: true, seccomp: { profileType: 'RuntimeDefault', localhostRef: '' } }), {
      sandboxConfig: sandboxConfig({ privileged: true }),
    }).spec();

  it('gets every capability the service holds, every host device, no masking and no seccomp', () => {
    const spec = privileged();
    assert.deepEqual(spec.process.capabilities, {
      bounding: HOST.heldCapabilities,
      effective: HOST.heldCapabilities,
      permitted: HOST.heldCapabilities,
    });
    assert.deepEqual(
      spec.linux.devices?.map((d) => d.path),
      ['/dev/sda'],
    );
    assert.deepEqual(spec.linux.resources.devices, [{ allow: true, access: 'rwm' }]);
    assert.deepEqual(spec.linux.maskedPaths, []);
    assert.deepEqual(spec.linux.readonlyPaths, []);
    assert.equal(spec.linux.seccomp, undefined);
  });

  it('may write /sys and the cgroup mount', () => {
    const mounts = privileged().mounts;
    assert.ok(mounts.find((m) => m.destination === '/sys')?.options.includes('rw'));
    assert.ok(mounts.find((m) => m.destination === '/sys/fs/cgroup')?.options.includes('rw'));
  });

  it('is refused in a sandbox that is not privileged', () => {
    given(containerConfig({}, { privileged: true })).throwsNaming('config.linux.security_context.privileged');
  });
});

describe('rootfs, masked paths and no_new_privs', () => {
  it('mounts the rootfs read-only, with the pod files read-only too, when asked', () => {
    const spec = given(containerConfig({}, { readonlyRootfs: true })).spec();
    assert.deepEqual(spec.root, { path: 'rootfs', readonly: true });
    assert.ok(spec.mounts.find((m) => m.destination === '/etc/hosts')?.options.includes('ro'));
    assert.ok(spec.mounts.find((m) => m.destination === '/dev/shm')?.options.includes('rw'));
  });

  it('uses the masked and read-only paths kubelet sends', () => {
    const spec = given(containerConfig({}, { maskedPaths: ['/proc/kcore'], readonlyPaths: ['/proc/sys'] })).spec();
    assert.deepEqual(spec.linux.maskedPaths, ['/proc/kcore']);
    assert.deepEqual(spec.linux.readonlyPaths, ['/proc/sys']);
  });

  it('masks nothing for empty lists (procMount Unmasked), unless told to fill in defaults', () => {
    assert.deepEqual(given(containerConfig()).spec().linux.maskedPaths, []);
    const filled = given(containerConfig(), { options: { defaultPathsWhenUnset: true } }).spec();
    assert.deepEqual(filled.linux.maskedPaths, [...DEFAULT_MASKED_PATHS]);
    assert.ok(filled.linux.readonlyPaths?.includes('/proc/sys'));
  });

  it('sets no_new_privs only when asked', () => {
    assert.equal(given(containerConfig({}, { noNewPrivs: true })).spec().process.noNewPrivileges, true);
    assert.equal(given(containerConfig()).spec().process.noNewPrivileges, false);
  });
});

describe('seccomp', () => {
  const withProfile = (sc: Partial<LinuxContainerSecurityContext__Output>, patch: Partial<Input> = {}) =>
    given(containerConfig({}, sc), patch);

  it('is unconfined when nothing is asked, or unconfined is', () => {
    assert.equal(withProfile({}).spec().linux.seccomp, undefined);
    assert.equal(
      withProfile({ seccomp: { profileType: 'Unconfined', localhostRef: '' } }).spec().linux.seccomp,
      undefined,
    );
    assert.equal(withProfile({ seccompProfilePath: 'unconfined' }).spec().linux.seccomp, undefined);
  });

  it('applies the default profile for RuntimeDefault, runtime/default and docker/default', () => {
    for (const sc of [
      { seccomp: { profileType: 'RuntimeDefault' as const, localhostRef: '' } },
      { seccompProfilePath: 'runtime/default' },
      { seccompProfilePath: 'docker/default' },
    ]) {
      const seccomp = withProfile(sc).spec().linux.seccomp;
      assert.equal(seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
      assert.ok(seccomp && allowsUnconditionally(seccomp, 'read'));
    }
  });

  it('allows sethostname only to a container with CAP_SYS_ADMIN', () => {
    const plain = withProfile({ seccompProfilePath: 'runtime/default' }).spec().linux.seccomp;
    const admin = withProfile({
      seccompProfilePath: 'runtime/default',
      capabilities: { addCapabilities: ['SYS_ADMIN'], dropCapabilities: [], addAmbientCapabilities: [] },
    }).spec().linux.seccomp;
    assert.ok(plain && !allowsUnconditionally(plain, 'sethostname') && !allowsUnconditionally(plain, 'setdomainname'));
    assert.ok(admin && allowsUnconditionally(admin, 'sethostname') && allowsUnconditionally(admin, 'setdomainname'));
  });

  it('loads a localhost profile through the loader, from either field', () => {
    const seen: string[] = [];
    const loadLocalhostProfile = (path: string) => {
      seen.push(path);
      return JSON.stringify({
        defaultAction: 'SCMP_ACT_LOG',
        syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
        archMap: [],
      });
    };
    const a = withProfile(
      { seccomp: { profileType: 'Localhost', localhostRef: '/etc/seccomp/a.json' } },
      { loadLocalhostProfile },
    ).spec();
    const b = withProfile({ seccompProfilePath: 'localhost//etc/seccomp/b.json' }, { loadLocalhostProfile }).spec();
    assert.deepEqual(seen, ['/etc/seccomp/a.json', '/etc/seccomp/b.json']);
    assert.deepEqual(a.linux.seccomp, {
      defaultAction: 'SCMP_ACT_LOG',
      syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
    });
    assert.deepEqual(b.linux.seccomp, a.linux.seccomp);
  });

  it('refuses an unknown prefix, naming the field', () => {
    withProfile({ seccompProfilePath: 'remote/x.json' }).throwsNaming(
      'config.linux.security_context.seccomp_profile_path',
    );
  });

  it('refuses a localhost profile that cannot be loaded', () => {
    withProfile({ seccompProfilePath: 'localhost//missing.json' }).throwsNaming(
      'config.linux.security_context.seccomp',
    );
  });

  it('refuses a localhost path with ".." or a relative one, and never quotes a file that is not JSON', () => {
    withProfile({ seccompProfilePath: 'localhost/../../etc/shadow' }).throwsNaming(
      'config.linux.security_context.seccomp_profile_path',
    );
    withProfile({ seccompProfilePath: 'localhost//var/lib/kubelet/seccomp/../../../etc/shadow' }).throwsNaming(
      'config.linux.security_context.seccomp_profile_path',
    );
    withProfile({ seccomp: { profileType: 'Localhost', localhostRef: 'profiles/a.json' } }).throwsNaming(
      'config.linux.security_context.seccomp.localhost_ref',
    );
    const secret = 'root:$6$secrethash:19000:0:99999:7:::';
    assert.throws(
      () => withProfile({ seccompProfilePath: 'localhost//etc/shadow' }, { loadLocalhostProfile: () => secret }).spec(),
      (e: unknown) =>
        e instanceof InvalidArgumentError &&
        /not valid JSON/.test(e.message) &&
        !e.message.includes('secrethash') &&
        !e.message.includes('root:'),
    );
  });

  it('refuses a localhost_ref on a profile type that is not Localhost', () => {
    withProfile({ seccomp: { profileType: 'RuntimeDefault', localhostRef: '/x' } }).throwsNaming(
      'config.linux.security_context.seccomp.localhost_ref',
    );
  });
});

describe('AppArmor and SELinux', () => {
  it('notes that AppArmor is skipped on a host without it', () => {
    const result = given(containerConfig()).result();
    assert.equal(result.spec.process.apparmorProfile, undefined);
    assert.ok(result.notes.some((n) => n.startsWith('apparmor:')));
  });

  it('applies the default or the named AppArmor profile on a host with it', () => {
    assert.equal(
      given(containerConfig(), { host: { apparmor: true } }).spec().process.apparmorProfile,
      'cri-ledger.apparmor.d',
    );
    const named = given(containerConfig({}, { apparmor: { profileType: 'Localhost', localhostRef: 'k8s-nginx' } }), {
      host: { apparmor: true },
    }).spec();
    assert.equal(named.process.apparmorProfile, 'k8s-nginx');
  });

  it('labels the process and mounts on an SELinux host, and lists the paths to relabel', () => {
    const config = containerConfig(
      { mounts: [mount('/data', '/srv/data', { selinuxRelabel: true })] },
      { selinuxOptions: { user: '', role: '', type: 'spc_t', level: 's0:c1,c2' } },
    );
    const result = given(config, { host: { selinux: true } }).result();
    assert.equal(result.spec.process.selinuxLabel, 'system_u:system_r:spc_t:s0:c1,c2');
    assert.equal(result.spec.linux.mountLabel, 'system_u:object_r:container_file_t:s0:c1,c2');
    assert.ok(result.relabel.some((r) => r.path === '/srv/data' && r.label === result.spec.linux.mountLabel));
  });

  it('is a no-op with a note on a host without SELinux', () => {
    const config = containerConfig({}, { selinuxOptions: { user: '', role: '', type: 'spc_t', level: '' } });
    const result = given(config).result();
    assert.equal(result.spec.process.selinuxLabel, undefined);
    assert.deepEqual(result.relabel, []);
    assert.ok(result.notes.some((n) => n.startsWith('selinux:')));
  });
});

// ---- namespaces ----

describe('namespaces', () => {
  const ns = (
    pid: 'POD' | 'CONTAINER' | 'NODE' | 'TARGET',
    patch: Partial<Input> = {},
    network: 'POD' | 'NODE' = 'POD',
  ) =>
    given(
      containerConfig({}, { namespaceOptions: { network, pid, ipc: 'POD', targetId: 'other', usernsOptions: null } }),
      patch,
    ).spec().linux.namespaces;

  it("joins the pod's network, ipc and uts namespaces", () => {
    const spaces = ns('CONTAINER');
    assert.deepEqual(
      spaces.find((n) => n.type === 'network'),
      { type: 'network', path: '/run/netns/cni-1' },
    );
    assert.deepEqual(
      spaces.find((n) => n.type === 'ipc'),
      { type: 'ipc', path: `/proc/${SANDBOX_PID}/ns/ipc` },
    );
    assert.deepEqual(
      spaces.find((n) => n.type === 'uts'),
      { type: 'uts', path: `/proc/${SANDBOX_PID}/ns/uts` },
    );
    assert.deepEqual(
      spaces.find((n) => n.type === 'mount'),
      { type: 'mount' },
    );
  });

  it('puts the pid namespace where the mode says', () => {
    assert.deepEqual(
      ns('POD').find((n) => n.type === 'pid'),
      { type: 'pid', path: `/proc/${SANDBOX_PID}/ns/pid` },
    );
    assert.deepEqual(
      ns('CONTAINER').find((n) => n.type === 'pid'),
      { type: 'pid' },
    );
    assert.equal(
      ns('NODE').find((n) => n.type === 'pid'),
      undefined,
    );
    assert.deepEqual(
      ns('TARGET', { targetPid: 77 }).find((n) => n.type === 'pid'),
      { type: 'pid', path: '/proc/77/ns/pid' },
    );
  });

  it('refuses TARGET without a target task', () => {
    given(
      containerConfig(
        {},
        { namespaceOptions: { network: 'POD', pid: 'TARGET', ipc: 'POD', targetId: 'x', usernsOptions: null } },
      ),
    ).throwsNaming('config.linux.security_context.namespace_options.target_id');
  });

  it("stays in the host's network and uts namespaces with host network", () => {
    const spaces = ns('POD', {}, 'NODE');
    assert.equal(
      spaces.find((n) => n.type === 'network'),
      undefined,
    );
    assert.equal(
      spaces.find((n) => n.type === 'uts'),
      undefined,
    );
  });

  it('makes a cgroup namespace only on cgroup v2', () => {
    assert.equal(
      ns('POD').find((n) => n.type === 'cgroup'),
      undefined,
    );
    assert.deepEqual(
      ns('POD', { host: { cgroupVersion: 2 } }).find((n) => n.type === 'cgroup'),
      { type: 'cgroup' },
    );
  });
});

// ---- mounts and devices ----

describe('mounts', () => {
  const dest = (spec: OciSpec, d: string) => spec.mounts.filter((m) => m.destination === d);

  it("has the defaults and the pod's files, /dev/shm from the pod", () => {
    const spec = given(containerConfig()).spec();
    for (const d of ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup'])
      assert.equal(dest(spec, d).length, 1, d);
    assert.equal(dest(spec, '/etc/resolv.conf')[0]?.source, FILES.resolvConf);
    assert.equal(dest(spec, '/etc/hostname')[0]?.source, FILES.hostname);
    assert.equal(dest(spec, '/etc/hosts')[0]?.source, FILES.hosts);
    assert.deepEqual(dest(spec, '/dev/shm'), [
      { destination: '/dev/shm', type: 'bind', source: FILES.devShm, options: ['rbind', 'rprivate', 'rw'] },
    ]);
    assert.ok(dest(spec, '/sys')[0]?.options.includes('ro'));
  });

  it('binds CRI mounts read-only when asked', () => {
    const spec = given(containerConfig({ mounts: [mount('/cfg', '/etc/app', { readonly: true })] })).spec();
    assert.deepEqual(dest(spec, '/cfg')[0]?.options, ['rbind', 'rprivate', 'ro']);
  });

  it('maps propagation and sets the rootfs propagation, when the host side allows it', () => {
    const config = containerConfig({
      mounts: [
        mount('/a', '/ha', { propagation: 'PROPAGATION_HOST_TO_CONTAINER' }),
        mount('/b', '/hb', { propagation: 'PROPAGATION_BIDIRECTIONAL' }),
      ],
    });
    const spec = given(config, { hostPropagation: () => ({ shared: true, slave: false }) }).spec();
    assert.ok(dest(spec, '/a')[0]?.options.includes('rslave'));
    assert.ok(dest(spec, '/b')[0]?.options.includes('rshared'));
    assert.equal(spec.linux.rootfsPropagation, 'rshared');
  });

  it('refuses mount paths that are relative or hold "..", naming the field', () => {
    given(containerConfig({ mounts: [mount('/ok', '/h'), mount('/data/../../etc', '/h')] })).throwsNaming(
      'config.mounts[1].container_path',
    );
    given(containerConfig({ mounts: [mount('/data', '/var/lib/../../etc')] })).throwsNaming(
      'config.mounts[0].host_path',
    );
    given(containerConfig({ mounts: [mount('/data', 'relative')] })).throwsNaming('config.mounts[0].host_path');
  });

  it('refuses bidirectional propagation over a host mount that is not shared', () => {
    const config = containerConfig({ mounts: [mount('/b', '/hb', { propagation: 'PROPAGATION_BIDIRECTIONAL' })] });
    given(config, { hostPropagation: () => ({ shared: false, slave: true }) }).throwsNaming(
      'config.mounts[0].container_path',
    );
  });

  it('refuses host-to-container propagation over a private host mount', () => {
    const config = containerConfig({
      mounts: [mount('/x', '/y'), mount('/a', '/ha', { propagation: 'PROPAGATION_HOST_TO_CONTAINER' })],
    });
    given(config).throwsNaming('config.mounts[1].container_path');
  });

  it('lets a CRI mount replace a default or a pod file at the same place', () => {
    const spec = given(
      containerConfig({ mounts: [mount('/etc/hosts', '/custom/hosts'), mount('/sys', '/host/sys')] }),
    ).spec();
    assert.deepEqual(
      dest(spec, '/etc/hosts').map((m) => m.source),
      ['/custom/hosts'],
    );
    assert.deepEqual(
      dest(spec, '/sys').map((m) => m.type),
      ['bind'],
    );
  });

  it('drops every default under /dev when /dev is mounted', () => {
    const spec = given(containerConfig({ mounts: [mount('/dev', '/dev')] })).spec();
    assert.equal(dest(spec, '/dev/pts').length, 0);
    assert.equal(dest(spec, '/dev/mqueue').length, 0);
  });

  it('uses the resolved host path', () => {
    const spec = given(containerConfig({ mounts: [mount('/data', '/link')] }), {
      resolveHostPath: (p) => (p === '/link' ? '/real' : p),
    }).spec();
    assert.equal(dest(spec, '/data')[0]?.source, '/real');
  });

  it('mounts image volumes, but not under a CRI mount at the same path', () => {
    const imageVolumes = [
      { containerPath: '/var/lib/data', hostPath: '/root/c/volumes/1' },
      { containerPath: '/cache', hostPath: '/root/c/volumes/2' },
    ];
    const spec = given(containerConfig({ mounts: [mount('/cache', '/host/cache')] }), { imageVolumes }).spec();
    assert.equal(dest(spec, '/var/lib/data')[0]?.source, '/root/c/volumes/1');
    assert.deepEqual(
      dest(spec, '/cache').map((m) => m.source),
      ['/host/cache'],
    );
  });

  it('orders binds shallowest first so a parent never hides a child', () => {
    const spec = given(containerConfig({ mounts: [mount('/a/b/c', '/x'), mount('/a', '/y')] })).spec();
    const order = spec.mounts.map((m) => m.destination);
    assert.ok(order.indexOf('/a') < order.indexOf('/a/b/c'));
  });
});

describe('devices', () => {
  const fuse: HostDevice = { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 };

  it('creates each CRI device and allows it with its permissions', () => {
    const config = containerConfig({
      devices: [{ containerPath: '/dev/myfuse', hostPath: '/dev/fuse', permissions: 'rw' }],
    });
    const spec = given(config, { deviceInfo: (p) => (p === '/dev/fuse' ? [fuse] : []) }).spec();
    assert.deepEqual(spec.linux.devices, [
      { type: 'c', path: '/dev/myfuse', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
    ]);
    assert.deepEqual(spec.linux.resources.devices, [
      { allow: false, access: 'rwm' },
      { allow: true, type: 'c', major: 10, minor: 229, access: 'rw' },
    ]);
  });

  it('refuses bad permissions and a path with no device', () => {
    given(containerConfig({ devices: [{ containerPath: '/dev/x', hostPath: '/dev/fuse', permissions: 'rx' }] }), {
      deviceInfo: () => [fuse],
    }).throwsNaming('config.devices[0].permissions');
    given(
      containerConfig({ devices: [{ containerPath: '/dev/x', hostPath: '/nope', permissions: 'r' }] }),
    ).throwsNaming('config.devices[0].host_path');
  });
});

// ---- resources, cgroups, annotations ----

describe('resources', () => {
  it('sets cpu, cpuset, memory with swap equal to the limit, and hugepages', () => {
    const res = {
      cpuPeriod: '100000',
      cpuQuota: '50000',
      cpuShares: '512',
      cpusetCpus: '0-1',
      cpusetMems: '0',
      memoryLimitInBytes: '268435456',
      hugepageLimits: [{ pageSize: '2MB', limit: '4194304' }],
    };
    const r = given(containerConfig({}, {}, res)).spec().linux.resources;
    assert.deepEqual(r.cpu, { period: 100000, quota: 50000, shares: 512, cpus: '0-1', mems: '0' });
    assert.deepEqual(r.memory, { limit: 268435456, swap: 268435456 });
    assert.deepEqual(r.hugepageLimits, [{ pageSize: '2MB', limit: 4194304 }]);
  });

  it('honours an explicit swap limit, and sets none without a swap controller', () => {
    const MiB = 1024 * 1024;
    assert.equal(
      given(
        containerConfig({}, {}, { memoryLimitInBytes: String(100 * MiB), memorySwapLimitInBytes: String(300 * MiB) }),
      ).spec().linux.resources.memory?.swap,
      300 * MiB,
    );
    const result = given(containerConfig({}, {}, { memoryLimitInBytes: String(100 * MiB) }), {
      host: { swapControllerAvailable: false },
    }).result();
    assert.deepEqual(result.spec.linux.resources.memory, { limit: 100 * MiB });
    assert.ok(result.notes.some((n) => n.includes('swap')));
  });

  it('applies unified settings only on cgroup v2', () => {
    const config = containerConfig({}, {}, { unified: { 'memory.high': '1000' } });
    assert.equal(given(config).spec().linux.resources.unified, undefined);
    assert.deepEqual(given(config, { host: { cgroupVersion: 2 } }).spec().linux.resources.unified, {
      'memory.high': '1000',
    });
  });

  it('keeps oom_score_adj as asked without the restriction', () => {
    assert.equal(given(containerConfig({}, {}, { oomScoreAdj: '-999' })).spec().process.oomScoreAdj, -999);
  });

  it('clamps a lower oom_score_adj up to the current one under the restriction', () => {
    const result = given(containerConfig({}, {}, { oomScoreAdj: '-999' }), {
      options: { restrictOomScoreAdj: true },
    }).result();
    assert.equal(result.spec.process.oomScoreAdj, HOST.currentOomScoreAdj);
    assert.ok(result.notes.some((n) => n.includes('clamped')));
  });

  it('keeps a higher oom_score_adj under the restriction', () => {
    assert.equal(
      given(containerConfig({}, {}, { oomScoreAdj: '1000' }), { options: { restrictOomScoreAdj: true } }).spec().process
        .oomScoreAdj,
      1000,
    );
  });

  it('refuses an oom_score_adj out of range and a non-integer resource', () => {
    given(containerConfig({}, {}, { oomScoreAdj: '1001' })).throwsNaming('config.linux.resources.oom_score_adj');
    given(containerConfig({}, {}, { cpuShares: '1.5' })).throwsNaming('config.linux.resources.cpu_shares');
  });
});

describe('cgroups path, sysctls and annotations', () => {
  it("puts the container under the pod's cgroup parent", () => {
    assert.equal(
      given(containerConfig()).spec().linux.cgroupsPath,
      `/kubepods/besteffort/podpod-uid-1/${CONTAINER_ID}`,
    );
  });

  it('uses slice:prefix:name under a systemd parent with the systemd driver, on cgroup v1 and v2', () => {
    const sandbox = sandboxConfig();
    for (const cgroupVersion of [1, 2] as const) {
      const spec = given(containerConfig(), {
        sandboxConfig: {
          ...sandbox,
          linux: { ...sandbox.linux!, cgroupParent: '/kubepods.slice/kubepods-pod1.slice' },
        },
        options: { cgroupDriver: 'systemd' },
        host: { cgroupVersion },
      }).spec();
      assert.equal(spec.linux.cgroupsPath, `kubepods-pod1.slice:cri-ledger:${CONTAINER_ID}`);
    }
  });

  it('refuses a cgroup parent that does not fit the driver, naming the field and saying which way to fix it', () => {
    const sandbox = sandboxConfig();
    const withParent = (cgroupParent: string) => ({ ...sandbox, linux: { ...sandbox.linux!, cgroupParent } });
    assert.throws(
      () => given(containerConfig(), { sandboxConfig: withParent('kubepods-burstable-pod1.slice') }).spec(),
      (e: Error) =>
        /sandbox_config\.linux\.cgroup_parent: .*systemd slice, but cgroupDriver is cgroupfs/.test(e.message),
    );
    assert.throws(
      () =>
        given(containerConfig(), {
          sandboxConfig: withParent('/kubepods/burstable/pod1'),
          options: { cgroupDriver: 'systemd' },
        }).spec(),
      (e: Error) => /not a systemd slice, but cgroupDriver is systemd/.test(e.message),
    );
  });

  it('leaves sysctls to the pause container, whose namespaces they belong to', () => {
    assert.equal(given(containerConfig()).spec().linux.sysctl, undefined);
  });

  it("keeps kubelet's annotations and adds the runtime's", () => {
    const a = given(
      containerConfig({
        annotations: { 'io.kubernetes.container.hash': 'abc123', 'io.kubernetes.cri.container-type': 'sandbox' },
      }),
    ).spec().annotations;
    assert.equal(a['io.kubernetes.container.hash'], 'abc123');
    assert.equal(a['io.kubernetes.cri.container-type'], 'container');
    assert.equal(a['io.kubernetes.cri.sandbox-id'], SANDBOX_ID);
    assert.equal(a['io.kubernetes.cri.container-name'], 'web');
    assert.equal(a['io.kubernetes.cri.image-name'], 'docker.io/library/busybox:latest');
    assert.equal(a['io.kubernetes.cri.sandbox-name'], 'nginx');
    assert.equal(a['io.kubernetes.cri.sandbox-namespace'], 'default');
    assert.equal(a['io.kubernetes.cri.sandbox-uid'], 'pod-uid-1');
  });

  it('roots the container at rootfs, relative to the bundle', () => {
    assert.deepEqual(given(containerConfig()).spec().root, { path: 'rootfs', readonly: false });
  });
});

// ---- the pause container ----

describe('sandbox spec', () => {
  function sandboxInput(config: PodSandboxConfig__Output, patch: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
    return {
      sandboxId: SANDBOX_ID,
      config,
      image: { name: 'registry.k8s.io/pause:3.6', config: { entrypoint: ['/pause'] } },
      netnsPath: '/run/netns/cni-1',
      files: FILES,
      loadLocalhostProfile: () => ({}),
      host: HOST,
      options: { restrictOomScoreAdj: false, containerdNamespace: 'cri-ledger' },
      ...patch,
    };
  }

  it('gives pause the default capabilities, less any the service does not hold, privileged or not', () => {
    const held = DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_AUDIT_WRITE' && c !== 'CAP_MKNOD');
    for (const privileged of [false, true]) {
      const config = sandboxConfig(privileged ? { privileged: true } : {});
      const caps = buildSandboxSpec(sandboxInput(config, { host: { ...HOST, heldCapabilities: held } })).spec.process
        .capabilities;
      assert.deepEqual(caps, { bounding: held, effective: held, permitted: held });
    }
  });

  it('makes new namespaces for the pod, joining the prepared netns', () => {
    const spec = buildSandboxSpec(sandboxInput(sandboxConfig())).spec;
    assert.deepEqual(spec.linux.namespaces, [
      { type: 'mount' },
      { type: 'network', path: '/run/netns/cni-1' },
      { type: 'uts' },
      { type: 'pid' },
      { type: 'ipc' },
    ]);
    assert.equal(spec.hostname, 'nginx-pod');
    assert.equal(spec.annotations['io.kubernetes.cri.container-type'], 'sandbox');
    assert.equal(spec.annotations['io.kubernetes.cri.sandbox-log-directory'], '/var/log/pods/default_nginx_pod-uid-1');
  });

  it("uses the host's namespaces as the options say, with no hostname of its own", () => {
    const config = sandboxConfig({
      namespaceOptions: { network: 'NODE', pid: 'NODE', ipc: 'NODE', targetId: '', usernsOptions: null },
    });
    const spec = buildSandboxSpec(sandboxInput(config, { netnsPath: '' })).spec;
    assert.deepEqual(spec.linux.namespaces, [{ type: 'mount' }]);
    assert.equal(spec.hostname, undefined);
    assert.equal(spec.mounts.find((m) => m.destination === '/dev/shm')?.source, '/dev/shm');
  });

  it('runs the pause command with no new privileges, sysctls, cgroup parent and a clamped oom score', () => {
    const { spec, notes } = buildSandboxSpec(
      sandboxInput(sandboxConfig(), { options: { restrictOomScoreAdj: true, containerdNamespace: 'cri-ledger' } }),
    );
    assert.deepEqual(spec.process.args, ['/pause']);
    assert.equal(spec.process.noNewPrivileges, true);
    assert.equal(spec.process.oomScoreAdj, -500);
    assert.ok(notes.some((n) => n.includes('clamped')));
    assert.deepEqual(spec.linux.sysctl, { 'net.ipv4.ip_forward': '1' });
    assert.equal(spec.linux.cgroupsPath, `/kubepods/besteffort/podpod-uid-1/${SANDBOX_ID}`);
    assert.equal(spec.linux.resources.cpu?.shares, 2);
  });

  it('keeps -998 without the restriction', () => {
    assert.equal(buildSandboxSpec(sandboxInput(sandboxConfig())).spec.process.oomScoreAdj, -998);
  });

  it('applies the run-as user and seccomp, but no seccomp when privileged', () => {
    const sc = {
      runAsUser: { value: '65535' },
      runAsGroup: { value: '65535' },
      seccomp: { profileType: 'RuntimeDefault' as const, localhostRef: '' },
    };
    const spec = buildSandboxSpec(sandboxInput(sandboxConfig(sc))).spec;
    assert.deepEqual(spec.process.user, { uid: 65535, gid: 65535, additionalGids: [65535] });
    assert.equal(spec.linux.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(
      buildSandboxSpec(sandboxInput(sandboxConfig({ ...sc, privileged: true }))).spec.linux.seccomp,
      undefined,
    );
  });

  it('refuses a pause image with nothing to run', () => {
    assert.throws(
      () => buildSandboxSpec(sandboxInput(sandboxConfig(), { image: { name: 'p', config: {} } })),
      InvalidArgumentError,
    );
  });
});
