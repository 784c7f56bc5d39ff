import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../src/domain/errors.js';
import {
  absolutePath,
  envVar,
  namespacedSysctls,
  runtimeHandler,
  freeText,
  labelMap,
  MAX_LABEL_BYTES,
  plainText,
  sysctls,
  textMap,
} from '../../src/domain/text.js';

const refused = (fn: () => unknown, field: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof InvalidArgumentError && field.test(e.message));

describe('request text that could split one value into two', () => {
  it('refuses control bytes in names and keys, naming the field and the byte', () => {
    refused(
      () => plainText('web\nroot', 'config.metadata.name'),
      /^config\.metadata\.name: contains a control character \(U\+000A\)/,
    );
    refused(() => plainText('web\r', 'x'), /U\+000D/);
    refused(() => plainText('a\u0000b', 'x'), /U\+0000/);
    assert.equal(plainText('web-0_ok.ñ', 'x'), 'web-0_ok.ñ');
  });

  it('takes any value but NUL in label, annotation and env values', () => {
    assert.equal(freeText('line one\nline two\r\n', 'v'), 'line one\nline two\r\n');
    refused(() => freeText('a\u0000b', 'config.labels["a"]'), /NUL/);
    refused(() => textMap({ 'bad\nkey': 'v' }, 'config.labels'), /^config\.labels key/);
    refused(() => textMap({ ok: 'v\u0000' }, 'config.annotations'), /^config\.annotations\["ok"\]/);
  });

  it('refuses a label containerd would refuse after the first events: an empty key, or key and value over 4096 bytes', () => {
    refused(() => labelMap({ '': '../../etc' }, 'config.labels'), /^config\.labels key: is empty/);
    refused(
      () => labelMap({ big: 'x'.repeat(MAX_LABEL_BYTES - 2) }, 'config.labels'),
      /^config\.labels\["big"\]: key and value are 4097 bytes/,
    );
    const fits = { big: 'x'.repeat(MAX_LABEL_BYTES - 3) };
    assert.equal(labelMap(fits, 'config.labels'), fits);
    refused(() => labelMap({ 'bad\nkey': 'v' }, 'config.labels'), /^config\.labels key/);
  });

  it('refuses a path that is relative, holds a ".." component or a control byte, naming the field', () => {
    assert.equal(absolutePath('/var/lib/data..old/x', 'config.mounts[0].host_path'), '/var/lib/data..old/x');
    refused(
      () => absolutePath('relative/x', 'config.mounts[0].container_path'),
      /^config\.mounts\[0\]\.container_path: "relative\/x" is not absolute/,
    );
    refused(
      () => absolutePath('/data/../../etc', 'config.mounts[1].container_path'),
      /^config\.mounts\[1\]\.container_path: .* contains a "\.\." component/,
    );
    refused(() => absolutePath('/data/..', 'f'), /"\.\." component/);
    refused(() => absolutePath('/data\n/x', 'f'), /control character/);
  });

  it("takes only the pod's own namespaced sysctls (as runc would, but before anything is written)", () => {
    const own = { network: false, ipc: false };
    namespacedSysctls(
      {
        'net.ipv4.ip_forward': '1',
        'kernel.shm_rmid_forced': '1',
        'fs.mqueue.msg_max': '10',
        'net/ipv4/ping_group_range': '0 1',
      },
      'config.linux.sysctls',
      own,
    );
    refused(
      () => namespacedSysctls({ 'kernel.core_pattern': '|/x' }, 'config.linux.sysctls', own),
      /^config\.linux\.sysctls key: "kernel\.core_pattern" is not a namespaced sysctl/,
    );
    refused(() => namespacedSysctls({ 'vm.swappiness': '0' }, 'config.linux.sysctls', own), /not a namespaced sysctl/);
    refused(
      () => namespacedSysctls({ 'net.ipv4.ip_forward': '0' }, 'config.linux.sysctls', { network: true, ipc: false }),
      /host's network namespace/,
    );
    refused(
      () => namespacedSysctls({ 'kernel.shmmax': '1' }, 'config.linux.sysctls', { network: false, ipc: true }),
      /host's IPC namespace/,
    );
  });

  it('takes a runtime handler only as empty or a containerd shim name, never a path containerd would run', () => {
    assert.equal(runtimeHandler('', 'runtime_handler'), '');
    assert.equal(runtimeHandler('io.containerd.runc.v2', 'runtime_handler'), 'io.containerd.runc.v2');
    refused(
      () => runtimeHandler('/tmp/evil-shim', 'runtime_handler'),
      /^runtime_handler: "\/tmp\/evil-shim" is not a runtime/,
    );
    refused(() => runtimeHandler('a\nb', 'runtime_handler'), /^runtime_handler: /);
    refused(() => runtimeHandler('io.containerd.runc.v2/../../x', 'runtime_handler'), /^runtime_handler: /);
  });

  it('refuses env keys that are empty, hold "=" or control bytes; a newline in HOME is one value', () => {
    envVar('HOME', '/root\nroot:x:0:0::/:/bin/sh', 'config.envs[0]');
    refused(() => envVar('', 'v', 'config.envs[1]'), /^config\.envs\[1\]\.key: is empty/);
    refused(() => envVar('A=B', 'v', 'config.envs[2]'), /contains "="/);
    refused(() => envVar('A\nB', 'v', 'config.envs[3]'), /control character/);
    refused(() => envVar('HOME', '/\u0000', 'config.envs[4]'), /^config\.envs\[4\]\.value: contains a NUL/);
  });

  it('refuses a sysctl value that carries a separator or a second assignment (CVE-2022-0811)', () => {
    assert.deepEqual(sysctls({ 'net.ipv4.ip_forward': '1', 'kernel/shm_rmid_forced': '1' }, 's'), {
      'net.ipv4.ip_forward': '1',
      'kernel/shm_rmid_forced': '1',
    });
    refused(
      () => sysctls({ 'kernel.shm_rmid_forced': '1+kernel.core_pattern=|/tmp/x' }, 'config.linux.sysctls'),
      /not one plain value/,
    );
    refused(() => sysctls({ 'net.ipv4.ip_forward': '1\nkernel.core_pattern=x' }, 's'), /not one plain value/);
    refused(() => sysctls({ 'bad key': '1' }, 's'), /not a sysctl name/);
  });
});
