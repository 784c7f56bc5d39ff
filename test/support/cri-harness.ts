import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  credentials,
  makeGenericClientConstructor,
  type CallOptions,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { connectContainerd, type ContainerdApi } from '../../src/adapters/containerd/containerd-api.js';
import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { imageServiceV1, runtimeServiceV1 } from '../../src/adapters/cri/cri-definition.js';
import { runCli, startServe, tempRoot, type ServeProcess } from './cli.js';
import { removeCgroupParents, removeLedgerCgroups, removeRuncCgroups } from './cgroups.js';
import { mountsUnder, startContainerd, type PrivateContainerd } from './containerd.js';
import {
  removeNetworkHostports,
  removeSharedHostportChainsIfEmpty,
  sharedHostportChainsExist,
} from './hostport-rules.js';
import { BUSYBOX_IMAGE, buildTestImage, PAUSE_IMAGE } from './oci-image.js';

/*
 * What an end-to-end CRI test needs: a private containerd with the test images, a
 * `cri-ledger serve` on a temp root talking to it, a CRI client, and optionally a
 * test-only CNI bridge on a random private /24 (with portmap chained, if asked).
 * `restart()` starts the service again on
 * the same root (with other failpoints, say); `cleanup()` removes everything.
 */

export const CRI_NAMESPACE = 'cri-ledger';
export const CNI_BIN_DIR = '/usr/lib/cni';

type Call = (
  request: object,
  options: CallOptions,
  callback: (error: ServiceError | null, response: Record<string, unknown>) => void,
) => void;

export interface CriHarness {
  root: string;
  socket: string;
  containerd: PrivateContainerd;
  api: ContainerdApi;
  /** The test bridge and its subnet prefix (`10.232.N`), when started with a network. */
  bridge?: string;
  subnet?: string;
  /** The CNI network's name, unique per harness (portmap names its chains and rules after it). */
  network: string;
  /** host-local's lease directory for the test network. */
  ipamDir: string;
  /** The service's registry hosts dir (containerd's certs.d format), empty at first. */
  registryConfigDir: string;
  serve(): ServeProcess;
  /** A call on the CRI RuntimeService; `options.deadline` gives it a client deadline, as kubelet's. */
  call<T = Record<string, unknown>>(method: string, request: object, options?: CallOptions): Promise<T>;
  /** A call on the CRI ImageService. */
  imageCall<T = Record<string, unknown>>(method: string, request: object): Promise<T>;
  /** Starts the service again on the same root, with these failpoints and extra CRI_LEDGER_* settings. */
  restart(failpoints?: string, env?: Record<string, string>): Promise<void>;
  /** Interfaces attached to the test bridge (empty when no pod is on it). */
  bridgePorts(): string;
  cleanup(): Promise<void>;
}

/** The ledger's head seq, read through the service's Ledger API: tests compare it to see that nothing was written. */
export async function ledgerHead(socket: string): Promise<number> {
  const client = LedgerClient.connect(socket);
  try {
    return (await client.status()).head;
  } finally {
    client.close();
  }
}

/** `env` is added to every start's environment (CRI_LEDGER_NATS_URL, say). */
/**
 * `portmap` (implies `network`) chains CNI's portmap plugin after the bridge, with the
 * `portMappings` capability, as a node that serves hostPorts has it; `cleanup()` then
 * also removes any hostport rule of the network's pods, and portmap's shared chains when
 * this harness made them and no other pod's rule is in them.
 */
export async function startCriHarness(
  o: { network?: boolean; portmap?: boolean; prefix?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CriHarness> {
  const temp = await tempRoot(o.prefix ?? 'cri-ledger-e2e-');
  const root = temp.dir;
  const confDir = join(root, 'cni');
  await mkdir(confDir);
  const registryConfigDir = join(root, 'certs.d');
  await mkdir(registryConfigDir);
  const withNetwork = o.network === true || o.portmap === true;
  const tag = randomBytes(3).toString('hex');
  const bridge = withNetwork ? `crle${tag}` : undefined;
  const subnet = withNetwork ? `10.232.${randomInt(1, 255)}` : undefined;
  const network = `crl-e2e-${tag}`;
  // The service's containerd namespace: runc names the pods' default cgroup parent after it.
  const namespace = o.env?.CRI_LEDGER_CONTAINERD_NAMESPACE ?? CRI_NAMESPACE;
  const madeSharedHostportChains = o.portmap === true && !sharedHostportChainsExist();
  if (bridge && subnet) {
    const ipam = { type: 'host-local', ranges: [[{ subnet: `${subnet}.0/24` }]], dataDir: join(root, 'ipam') };
    const plugins: unknown[] = [{ type: 'loopback' }, { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam }];
    if (o.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
    await writeFile(join(confDir, '10-e2e.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: network, plugins }));
  }
  const containerd = await startContainerd();
  let serve: ServeProcess | undefined;
  let client: (Client & Record<string, Call>) | undefined;
  let imageClient: (Client & Record<string, Call>) | undefined;
  const socket = join(root, 'cri.sock');
  const api = connectContainerd({ address: containerd.address, namespace: CRI_NAMESPACE });
  const harness: CriHarness = {
    root,
    socket,
    containerd,
    api,
    ...(bridge ? { bridge } : {}),
    ...(subnet ? { subnet } : {}),
    network,
    ipamDir: join(root, 'ipam', network),
    registryConfigDir,
    serve: () => serve!,
    call: (method, request, options = {}) =>
      new Promise((resolve, reject) =>
        client![method]!.call(client, request, options, (error, response) =>
          error ? reject(error) : resolve(response as never),
        ),
      ),
    imageCall: (method, request) =>
      new Promise((resolve, reject) =>
        imageClient![method]!.call(imageClient, request, {}, (error, response) =>
          error ? reject(error) : resolve(response as never),
        ),
      ),
    async restart(failpoints, env = {}) {
      client?.close();
      imageClient?.close();
      await serve?.stop();
      serve = await startServe({
        root,
        socket,
        args: [
          '--containerd-address',
          containerd.address,
          '--cni-conf-dir',
          confDir,
          '--cni-bin-dir',
          CNI_BIN_DIR,
          '--restrict-oom-score-adj',
          'true',
          '--registry-config-path',
          registryConfigDir,
        ],
        env: { ...process.env, ...o.env, ...env, ...(failpoints ? { CRI_LEDGER_FAILPOINTS: failpoints } : {}) },
      });
      const Constructor = makeGenericClientConstructor(runtimeServiceV1, 'RuntimeService');
      client = new Constructor(`unix://${socket}`, credentials.createInsecure()) as Client & Record<string, Call>;
      const ImageConstructor = makeGenericClientConstructor(imageServiceV1, 'ImageService');
      imageClient = new ImageConstructor(`unix://${socket}`, credentials.createInsecure()) as Client &
        Record<string, Call>;
    },
    bridgePorts: () =>
      bridge ? spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).stdout : '',
    async cleanup() {
      // Every step runs even when one before it failed (a busy machine makes a cgroup or a
      // shim slow to go): a skipped unmount or temp dir would outlive the test.
      const failures: unknown[] = [];
      const step = async (action: () => unknown): Promise<void> => {
        try {
          await action();
        } catch (error) {
          failures.push(error);
        }
      };
      client?.close();
      imageClient?.close();
      api.close();
      await step(() => serve?.stop('SIGKILL'));
      await step(() => containerd.stop());
      // The shims died with containerd, so runc never deleted the pods' cgroups.
      await step(() => removeRuncCgroups(join(root, 'state', 'runc')));
      await removeLedgerCgroups(join(root, 'ledger'), namespace).catch(() => undefined);
      if (namespace !== CRI_NAMESPACE) await removeCgroupParents([namespace]).catch(() => undefined);
      // Pod /dev/shm tmpfs and netns files live under the service's state dir.
      await step(() => {
        for (const mount of mountsUnder(root)) execFileSync('umount', ['-l', mount]);
      });
      if (o.portmap) {
        await step(() => removeNetworkHostports(network));
        if (madeSharedHostportChains) await step(() => removeSharedHostportChainsIfEmpty());
      }
      if (bridge) spawnSync('ip', ['link', 'del', bridge]);
      await step(() => temp.cleanup());
      if (failures.length > 0) throw failures[0];
    },
  };
  try {
    await harness.restart();
    // Through the service, as an operator would: `cri-ledger images import`.
    for (const spec of [BUSYBOX_IMAGE, PAUSE_IMAGE]) {
      const image = await buildTestImage(spec, join(root, 'images'));
      const result = await runCli(['images', 'import', image.file, '--socket', socket]);
      if (result.code !== 0)
        throw new Error(`cri-ledger images import ${image.file} failed (${result.code}):\n${result.stderr}`);
    }
  } catch (error) {
    await harness.cleanup();
    throw error;
  }
  return harness;
}
