import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { canConnect, exited, freePort, natsServerBinary } from './nats-server.js';

/** One server of a test cluster: its own name, ports and store. */
export interface ClusterServer {
  /** `s1`, `s2`, `s3`: the server_name JetStream reports as a stream's leader. */
  name: string;
  url: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  storeDir: string;
  pid(): number | undefined;
  running(): boolean;
  paused(): boolean;
}

/** A JetStream cluster of nats-servers on loopback, with route, client and monitor ports of its own. */
export interface NatsCluster {
  servers: ClusterServer[];
  /** Every client URL, comma-separated: what `nats.url` takes. */
  urls: string;
  /** SIGKILL one server, keeping its store: a crash. */
  kill(name: string): Promise<void>;
  /** Starts a killed or stopped server again on its ports and store; waits for its listener only. */
  start(name: string): Promise<void>;
  /** SIGSTOP: the process is frozen, its sockets stay open, peers see it go silent (a partition). */
  pause(name: string): void;
  /** SIGCONT after pause(). */
  resume(name: string): void;
  /** Resolves once every running server answers /healthz ok (meta leader known, streams current). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** The server_name of `stream`'s RAFT leader, asked of any running server until one is known. */
  streamLeader(stream: string, timeoutMs?: number): Promise<string>;
  /** Kills every server and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export const DEFAULT_CLUSTER_START_TIMEOUT_MS = 20_000;
const CLUSTER_NAME = 'cri-ledger-test';

// As in nats-server.ts: a watchdog in its own process group kills every server whose pid
// file is in the temp dir, and removes the dir, once this process is gone or stop() ran.
const WATCHDOG = 'read _; for f in "$1"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; rm -rf "$1"';

function configFor(s: ClusterServer, peers: ClusterServer[]): string {
  const routes = peers.filter((p) => p.name !== s.name).map((p) => `nats-route://127.0.0.1:${p.clusterPort}`);
  return [
    `server_name: ${s.name}`,
    `listen: 127.0.0.1:${s.port}`,
    `http: 127.0.0.1:${s.monitorPort}`,
    `jetstream { store_dir: "${s.storeDir}", max_memory_store: 64MB, max_file_store: 4GB }`,
    `cluster { name: ${CLUSTER_NAME}, listen: 127.0.0.1:${s.clusterPort}, routes: [${routes.join(', ')}] }`,
    '',
  ].join('\n');
}

async function healthy(monitorPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, { signal: AbortSignal.timeout(1_000) });
    return res.ok;
  } catch {
    return false;
  }
}

/** Starts `size` (default 3) clustered nats-servers with JetStream; resolves once all are healthy. */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const binary = natsServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-nats-cluster-'));
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.unref();
  (watchdog.stdin as Socket).unref();
  const watchdogDone = exited(watchdog);

  const procs = new Map<string, ChildProcess>();
  const frozen = new Set<string>();
  const servers: ClusterServer[] = [];
  for (let i = 1; i <= size; i++) {
    const name = `s${i}`;
    const [port, clusterPort, monitorPort] = [await freePort(), await freePort(), await freePort()];
    servers.push({
      name,
      url: `nats://127.0.0.1:${port}`,
      port,
      clusterPort,
      monitorPort,
      storeDir: join(dir, name, 'store'),
      pid: () => procs.get(name)?.pid,
      running: () => procs.has(name),
      paused: () => frozen.has(name),
    });
  }
  const byName = (name: string): ClusterServer => {
    const s = servers.find((x) => x.name === name);
    if (!s) throw new Error(`no server ${name} in the cluster (${servers.map((x) => x.name).join(', ')})`);
    return s;
  };

  const launch = async (s: ClusterServer): Promise<void> => {
    if (procs.has(s.name)) return;
    mkdirSync(s.storeDir, { recursive: true });
    const configFile = join(dir, s.name, 'server.conf');
    writeFileSync(configFile, configFor(s, servers));
    const p = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    procs.set(s.name, p);
    if (p.pid !== undefined) writeFileSync(join(dir, `${s.name}.pid`), String(p.pid));
    let output = '';
    let ready = false;
    p.stderr!.setEncoding('utf8');
    p.stderr!.on('data', (chunk: string) => {
      if (ready) return;
      output += chunk;
      ready = output.includes('Server is ready');
    });
    const deadline = Date.now() + DEFAULT_CLUSTER_START_TIMEOUT_MS;
    while (!(ready && (await canConnect(s.port)))) {
      if (p.exitCode !== null) throw new Error(`nats-server ${s.name} exited with ${p.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`nats-server ${s.name} did not become ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const kill = async (name: string): Promise<void> => {
    const p = procs.get(name);
    if (!p) return;
    p.kill('SIGKILL');
    await exited(p);
    procs.delete(name);
    frozen.delete(name);
    // The watchdog must never kill a pid the system has since given to someone else.
    rmSync(join(dir, `${name}.pid`), { force: true });
  };

  const signal = (name: string, sig: NodeJS.Signals): void => {
    const p = procs.get(name);
    if (!p) throw new Error(`server ${name} is not running`);
    p.kill(sig);
  };

  const waitHealthy = async (timeoutMs = DEFAULT_CLUSTER_START_TIMEOUT_MS): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = servers.filter((s) => procs.has(s.name) && !frozen.has(s.name));
      const states = await Promise.all(live.map((s) => healthy(s.monitorPort)));
      if (states.every(Boolean)) return;
      if (Date.now() > deadline) {
        const sick = live.filter((_, i) => !states[i]).map((s) => s.name);
        throw new Error(`nats cluster not healthy after ${timeoutMs} ms: ${sick.join(', ')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async (): Promise<void> => {
    for (const s of servers) await kill(s.name);
    watchdog.ref();
    watchdog.stdin!.end();
    await watchdogDone;
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await Promise.all(servers.map((s) => launch(s)));
    await waitHealthy();
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    servers,
    urls: servers.map((s) => s.url).join(','),
    kill,
    start: (name) => launch(byName(name)),
    pause: (name) => {
      signal(name, 'SIGSTOP');
      frozen.add(name);
    },
    resume: (name) => {
      signal(name, 'SIGCONT');
      frozen.delete(name);
    },
    waitHealthy,
    streamLeader: async (stream, timeoutMs = DEFAULT_CLUSTER_START_TIMEOUT_MS) => {
      // Asked again until a leader is known: during an election requests time out or
      // the stream reports none.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const live = servers.filter((s) => procs.has(s.name) && !frozen.has(s.name)).map((s) => s.url);
        try {
          const nc = await connect({ servers: live, timeout: 1_000 });
          try {
            const info = await (await nc.jetstreamManager({ timeout: 1_000 })).streams.info(stream);
            if (info.cluster?.leader) return info.cluster.leader;
          } finally {
            await nc.close();
          }
        } catch (error) {
          if (Date.now() > deadline) throw error;
        }
        if (Date.now() > deadline) throw new Error(`stream ${stream} has no leader after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop,
  };
}
