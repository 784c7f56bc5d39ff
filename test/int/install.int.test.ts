import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startServe, tempRoot } from '../support/cli.js';
import { until } from '../support/until.js';

/*
 * The service as an operator installs it, as far as a machine without systemd as PID 1
 * allows: scripts/install.sh into a temp root (DESTDIR), the unit checked by
 * `systemd-analyze verify`, the packaged config checked by `serve --check-config`, the
 * uninstall that keeps the ledger, and the readiness datagram a Type=notify unit waits for.
 */

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const UNIT = 'etc/systemd/system/cri-ledger.service';

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000 });
}

describe('installing cri-ledger as a service', () => {
  let temp: { dir: string; cleanup: () => Promise<void> };
  let root = '';
  const app = () => join(root, 'usr/local/lib/cri-ledger');
  const installedCli = (args: string[]) => run(process.execPath, [join(app(), 'bin/cri-ledger.js'), ...args]);

  before(async () => {
    temp = await tempRoot('cri-ledger-install-');
    root = join(temp.dir, 'root');
    const install = run('bash', [join(REPO, 'scripts/install.sh')], { DESTDIR: root });
    assert.equal(install.status, 0, install.stderr);
  });
  after(() => temp?.cleanup());

  it('puts the app, the CLI, the unit and the config in place, without the development tools', () => {
    for (const path of [
      'usr/local/bin/cri-ledger',
      UNIT,
      'etc/cri-ledger/config.yaml',
      'usr/local/lib/cri-ledger/dist/src/cli/main.js',
    ])
      assert.ok(existsSync(join(root, path)), path);
    assert.ok(statSync(join(root, 'usr/local/bin/cri-ledger')).mode & 0o111, 'the CLI is executable');
    for (const dev of ['typescript', 'oxlint', '@biomejs/biome', 'fast-check'])
      assert.ok(!existsSync(join(app(), 'node_modules', dev, 'package.json')), `${dev} is not installed`);
    assert.ok(existsSync(join(app(), 'node_modules/@grpc/grpc-js')));
  });

  it('has a unit that systemd-analyze verify accepts, and that it would refuse without its binary', () => {
    // verify resolves the unit's dependencies (sysinit.target, ...) under the root: give it the host's units.
    mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
    cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
    const verify = () => run('systemd-analyze', ['verify', `--root=${root}`, join(root, UNIT)]);
    const ok = verify();
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stderr.trim(), '', 'no warning either (an unknown key only warns)');
    const unit = readFileSync(join(root, UNIT), 'utf8');
    for (const line of [
      'Type=notify',
      'Restart=always',
      'After=network-online.target local-fs.target containerd.service',
    ])
      assert.ok(unit.includes(line), line);
    const cli = join(root, 'usr/local/bin/cri-ledger');
    renameSync(cli, `${cli}.away`);
    try {
      assert.notEqual(verify().status, 0, 'verify checks the ExecStart binary');
    } finally {
      renameSync(`${cli}.away`, cli);
    }
  });

  it('ships a config with every key that serve --check-config accepts, and refuses a bad value naming it', () => {
    const config = join(root, 'etc/cri-ledger/config.yaml');
    const checked = installedCli(['serve', '--check-config', '--config', config]);
    assert.equal(checked.status, 0, checked.stderr);
    const effective = JSON.parse(checked.stdout) as Record<string, unknown>;
    const text = readFileSync(config, 'utf8');
    for (const key of Object.keys(effective).filter((k) => k !== 'node'))
      assert.match(text, new RegExp(`^${key}:`, 'm'), `the config file has ${key}`);
    const bad = join(temp.dir, 'bad.yaml');
    writeFileSync(bad, 'nats:\n  replicas: 9\n');
    const refused = installedCli(['serve', '--check-config', '--config', bad]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /nats\.replicas: .*<=5 \(in .*bad\.yaml\)/);
  });

  it('keeps an edited config on reinstall; uninstall keeps the ledger unless --purge', () => {
    const config = join(root, 'etc/cri-ledger/config.yaml');
    writeFileSync(config, `${readFileSync(config, 'utf8')}\n# edited by the operator\n`);
    assert.equal(run('bash', [join(REPO, 'scripts/install.sh')], { DESTDIR: root }).status, 0);
    assert.match(readFileSync(config, 'utf8'), /edited by the operator/);
    mkdirSync(join(root, 'var/lib/cri-ledger/ledger'), { recursive: true });
    const removed = run('bash', [join(REPO, 'scripts/uninstall.sh')], { DESTDIR: root });
    assert.equal(removed.status, 0, removed.stderr);
    assert.ok(
      !existsSync(join(root, UNIT)) && !existsSync(join(root, 'usr/local/bin/cri-ledger')) && !existsSync(app()),
    );
    assert.ok(
      existsSync(join(root, 'var/lib/cri-ledger/ledger')) && existsSync(config),
      'the ledger and the config stay',
    );
    assert.equal(run('bash', [join(REPO, 'scripts/uninstall.sh'), '--purge'], { DESTDIR: root }).status, 0);
    assert.ok(!existsSync(join(root, 'var/lib/cri-ledger')) && !existsSync(join(root, 'etc/cri-ledger')));
  });

  it('tells $NOTIFY_SOCKET READY=1 once it serves, and STOPPING=1 when it stops', async () => {
    // A datagram socket standing in for systemd's (Node has none): python3 prints what arrives.
    const notifySocket = join(temp.dir, 'notify.sock');
    const listener = spawn('python3', [
      '-c',
      'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\n' +
        'while True:\n  print(s.recv(4096).decode().replace("\\n"," "),flush=True)',
      notifySocket,
    ]);
    let heard = '';
    listener.stdout.setEncoding('utf8').on('data', (c: string) => (heard += c));
    try {
      await until('the notify socket', async () => existsSync(notifySocket), 20_000);
      const serve = await startServe({
        root: join(temp.dir, 'serve'),
        socket: join(temp.dir, 'serve.sock'),
        args: ['--containerd-address', join(temp.dir, 'no-containerd.sock')],
        env: { ...process.env, NOTIFY_SOCKET: notifySocket },
      });
      await until('READY=1', async () => heard.includes('READY=1'));
      assert.match(heard, new RegExp(`READY=1 STATUS=serving on ${serve.socket} MAINPID=${serve.child.pid}`));
      await serve.stop('SIGTERM');
      await until('STOPPING=1', async () => heard.includes('STOPPING=1'));
    } finally {
      listener.kill();
    }
  });
});
