import type { PodNetworkRequest, SandboxNetwork } from '../../commands/ports.js';
import { createNetns, netnsPath, removeNetns } from '../netns/netns.js';
import { CniNetwork } from './cni-network.js';

/**
 * The RunPodSandbox network port: a netns file under `<stateDir>/netns/<sandboxId>` and
 * the CNI network from the conf dir, loaded on each call so a config an operator (or a
 * network add-on) writes later is picked up, as containerd's watch does.
 */
export class CniPodNetwork implements SandboxNetwork {
  constructor(private readonly o: { stateDir: string; confDir: string; binDir: string }) {}

  netnsPathFor(sandboxId: string): string {
    return netnsPath(this.o.stateDir, sandboxId);
  }

  createNetns(sandboxId: string): Promise<string> {
    return createNetns(this.o.stateDir, sandboxId);
  }

  removeNetns(sandboxId: string): Promise<void> {
    return removeNetns(this.netnsPathFor(sandboxId));
  }

  async setUp(request: PodNetworkRequest): Promise<{ ip: string; additionalIps: string[] }> {
    const network = await CniNetwork.load({ confDir: this.o.confDir, binDir: this.o.binDir });
    const result = await network.setUp(request);
    return { ip: result.ip, additionalIps: result.additionalIps };
  }

  async tearDown(request: PodNetworkRequest): Promise<void> {
    const network = await CniNetwork.load({ confDir: this.o.confDir, binDir: this.o.binDir });
    await network.tearDown(request);
  }
}
