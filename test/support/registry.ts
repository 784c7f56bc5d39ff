import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, sign, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * A private Debian docker-registry (distribution 2.8) on a free loopback port, its
 * storage in a temp dir. Three variants:
 * - `none`: anyone pulls and pushes;
 * - `basic`: htpasswd, the bcrypt line made by perl's crypt() (glibc's libxcrypt does
 *   bcrypt), so no apache2-utils and no npm bcrypt;
 * - `token`: the registry's own token auth, trusting a self-signed certificate made by
 *   `openssl`, with the token service an HTTP server in this test process that records
 *   every request (so a test can count them) and signs RS256 JWTs with node:crypto.
 * The test support itself pushes with admin credentials (Basic, or a token it signs
 * directly), so pushes never show up among the token requests.
 */

export type RegistryAuthKind = 'none' | 'basic' | 'token';

/** The one user of the `basic` and `token` variants. */
export const REGISTRY_USER = 'puller';
export const REGISTRY_PASSWORD = 'pull-secret';
/** The refresh token the `token` variant's token service accepts for REGISTRY_USER. */
export const REGISTRY_IDENTITY_TOKEN = 'cri-ledger-test-refresh-token';
export const DEFAULT_REGISTRY_START_TIMEOUT_MS = 15_000;
const TOKEN_SERVICE = 'cri-ledger-test-registry';
const TOKEN_ISSUER = 'cri-ledger-test-token-service';
const TOKEN_LIFETIME_S = 300;

/** A request the token service received. */
export interface TokenRequest {
  method: string;
  grantType: 'basic' | 'refresh_token' | 'anonymous';
  scopes: string[];
  granted: boolean;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`, the registry part of a reference. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  auth: RegistryAuthKind;
  storageDir: string;
  /** What the token service was asked, in order (`token` variant; empty otherwise). */
  tokenRequests: TokenRequest[];
  /** The Authorization header that may push and pull `repository`; undefined without auth. */
  adminAuthorization(repository: string): string | undefined;
  /** Where the filesystem driver keeps a blob's bytes (to tamper with). */
  blobFile(digest: string): string;
  /** SIGKILL, keeping the storage: the registry is gone. */
  kill(): Promise<void>;
  /** Starts it again after kill(), on the same port and storage. */
  restart(): Promise<void>;
  /** Stops everything and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** Same watchdog as nats-server.ts: the process and the temp dir go even if this process is SIGKILLed. */
const WATCHDOG = 'read _; [ -f "$1/registry.pid" ] && kill -9 "$(cat "$1/registry.pid")" 2>/dev/null; rm -rf "$1"';

function findBinary(name: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() || undefined : undefined;
}

/** The docker-registry binary; throws a message that says how to install it. */
export function dockerRegistryBinary(): string {
  const found =
    findBinary('docker-registry') ?? (existsSync('/usr/bin/docker-registry') ? '/usr/bin/docker-registry' : undefined);
  if (found) return found;
  throw new Error(
    'docker-registry not found: run the tests through scripts/test.sh, which installs the Debian packages in scripts/lib.sh, ' +
      'or run: apt-get install -y docker-registry',
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** A bcrypt htpasswd line; docker-registry's htpasswd reader accepts only bcrypt. */
export function htpasswdLine(user: string, password: string): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const salt = [...randomBytes(22)].map((b) => alphabet[b % 64]).join('');
  const hash = execFileSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`], {
    encoding: 'utf8',
  });
  if (!hash.startsWith('$2b$05$'))
    throw new Error(`this libc's crypt() does not do bcrypt (got "${hash}"); docker-registry's htpasswd needs it`);
  return `${user}:${hash}\n`;
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** A distribution token (JWT, RS256) for `scopes` (`repository:name:pull,push`), trusted through the x5c certificate. */
function signToken(key: string, certDer: Buffer, subject: string, scopes: string[]): string {
  const now = Math.floor(Date.now() / 1000);
  const access = scopes.map((scope) => {
    const [type, ...rest] = scope.split(':');
    const actions = rest.pop()?.split(',') ?? [];
    return { type, name: rest.join(':'), actions: actions.filter((a) => a === 'pull' || a === 'push') };
  });
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
  const claims = {
    iss: TOKEN_ISSUER,
    sub: subject,
    aud: TOKEN_SERVICE,
    exp: now + TOKEN_LIFETIME_S,
    nbf: now - 10,
    iat: now,
    jti: randomBytes(8).toString('hex'),
    access,
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${base64url(sign('sha256', Buffer.from(signingInput), key))}`;
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

/** The token service: Basic credentials (GET), a refresh token (POST form), or anonymous with no access. */
function startTokenService(key: string, certDer: Buffer, requests: TokenRequest[]): Promise<Server> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token');
    let params = url.searchParams;
    let grantType: TokenRequest['grantType'] = 'anonymous';
    let ok = true;
    if (req.method === 'POST') {
      params = new URLSearchParams(await body(req));
      grantType = 'refresh_token';
      ok = params.get('grant_type') === 'refresh_token' && params.get('refresh_token') === REGISTRY_IDENTITY_TOKEN;
    } else if (req.headers.authorization?.startsWith('Basic ')) {
      grantType = 'basic';
      ok =
        Buffer.from(req.headers.authorization.slice(6), 'base64').toString('utf8') ===
        `${REGISTRY_USER}:${REGISTRY_PASSWORD}`;
    }
    const scopes = params
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    requests.push({ method: req.method ?? '', grantType, scopes, granted: ok });
    if (!ok || params.get('service') !== TOKEN_SERVICE) {
      res
        .writeHead(401, { 'content-type': 'application/json' })
        .end(JSON.stringify({ details: 'bad credentials or service' }));
      return;
    }
    const token = signToken(
      key,
      certDer,
      grantType === 'anonymous' ? '' : REGISTRY_USER,
      grantType === 'anonymous' ? [] : scopes,
    );
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: TOKEN_LIFETIME_S,
        issued_at: new Date().toISOString(),
      }),
    );
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.writeHead(500).end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function waitReady(url: string, proc: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + DEFAULT_REGISTRY_START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited with ${proc.exitCode}:\n${output()}`);
    const status = await fetch(`${url}/v2/`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200 || status === 401) return;
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${url}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts docker-registry with the `auth` variant; resolves once /v2/ answers. */
export async function startRegistry(options: { auth?: RegistryAuthKind } = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'none';
  const binary = dockerRegistryBinary();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cri-ledger-registry-'));
  const storageDir = join(dir, 'storage');
  mkdirSync(storageDir);
  const pidFile = join(dir, 'registry.pid');
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.unref();
  (watchdog.stdin as Socket).unref();
  const watchdogDone = exited(watchdog);
  const tokenRequests: TokenRequest[] = [];
  let proc: ChildProcess | undefined;
  let tokenService: Server | undefined;
  let adminAuthorization: (repository: string) => string | undefined = () => undefined;

  const stop = async (): Promise<void> => {
    if (proc) {
      proc.kill('SIGKILL');
      await exited(proc);
      proc = undefined;
      rmSync(pidFile, { force: true });
    }
    if (tokenService) {
      const s = tokenService;
      tokenService = undefined;
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    watchdog.ref();
    watchdog.stdin!.end();
    await watchdogDone;
    rmSync(dir, { recursive: true, force: true });
  };

  const configFile = join(dir, 'config.yml');
  /** Runs docker-registry on the written config, and waits until /v2/ answers. */
  const launch = async (): Promise<void> => {
    const p = spawn(binary, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    if (p.pid !== undefined) writeFileSync(pidFile, String(p.pid));
    let output = '';
    p.stderr!.setEncoding('utf8');
    p.stderr!.on('data', (chunk: string) => {
      if (output.length < 64 * 1024) output += chunk;
    });
    await waitReady(`http://127.0.0.1:${port}`, p, () => output);
  };

  try {
    let authConfig: Record<string, unknown> | undefined;
    if (auth === 'basic') {
      const file = join(dir, 'htpasswd');
      writeFileSync(file, htpasswdLine(REGISTRY_USER, REGISTRY_PASSWORD));
      authConfig = { htpasswd: { realm: 'cri-ledger-test', path: file } };
      const basic = `Basic ${Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64')}`;
      adminAuthorization = () => basic;
    } else if (auth === 'token') {
      if (!findBinary('openssl'))
        throw new Error(
          'openssl not found (apt-get install -y openssl): the token variant signs with a certificate it makes',
        );
      const keyFile = join(dir, 'token.key');
      const certFile = join(dir, 'token.pem');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '2',
          '-subj',
          `/CN=${TOKEN_ISSUER}`,
        ],
        { stdio: 'ignore' },
      );
      const key = readFileSync(keyFile, 'utf8');
      const certDer = new X509Certificate(readFileSync(certFile)).raw;
      tokenService = await startTokenService(key, certDer, tokenRequests);
      const tokenPort = (tokenService.address() as AddressInfo).port;
      authConfig = {
        token: {
          realm: `http://127.0.0.1:${tokenPort}/token`,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootcertbundle: certFile,
        },
      };
      adminAuthorization = (repository) =>
        `Bearer ${signToken(key, certDer, 'admin', [`repository:${repository}:pull,push`])}`;
    }
    // docker-registry reads YAML, and JSON is YAML.
    const config = {
      version: '0.1',
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: storageDir },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
      ...(authConfig ? { auth: authConfig } : {}),
    };
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    auth,
    storageDir,
    tokenRequests,
    adminAuthorization: (repository) => adminAuthorization(repository),
    blobFile: (digest) => {
      const hex = digest.slice('sha256:'.length);
      return join(storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    },
    kill: async () => {
      const p = proc;
      if (!p) return;
      p.kill('SIGKILL');
      await exited(p);
      proc = undefined;
      rmSync(pidFile, { force: true });
    },
    restart: async () => {
      if (proc) return;
      await launch();
    },
    stop,
  };
}
