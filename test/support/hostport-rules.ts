import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

/*
 * What CNI's portmap plugin leaves in the nat table, as a test sees it. Per pod (network
 * name + container id) it makes a `CNI-DN-<hash>` chain and a jump to it in
 * `CNI-HOSTPORT-DNAT` whose comment names the network and the id; those go with the
 * pod's DEL. The shared chains (CNI-HOSTPORT-DNAT, -SETMARK, -MASQ, and their jumps from
 * PREROUTING, OUTPUT, POSTROUTING) outlive every pod by design: a test removes them only
 * when it made them and they are empty.
 */

const PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const SHARED_CHAINS = ['CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-MASQ', 'CNI-HOSTPORT-SETMARK'];

function iptables(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('iptables', ['-w', '-t', 'nat', ...args], { encoding: 'utf8', env: { ...process.env, PATH } });
}

/** The nat table, as `iptables-save -t nat` prints it. */
export function natTable(): string {
  const out = spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8', env: { ...process.env, PATH } });
  if (out.status !== 0) throw new Error(`iptables-save -t nat failed: ${out.stderr}`);
  return out.stdout;
}

/** portmap's per-pod DNAT chain: `CNI-DN-` and sha512(network + id), cut to 28 characters (libcni's FormatChainName). */
export function dnatChainOf(network: string, sandboxId: string): string {
  return `CNI-DN-${createHash('sha512')
    .update(network + sandboxId)
    .digest('hex')}`.slice(0, 28);
}

/** The nat lines of one pod: its DNAT chain (declared, filled, jumped to) and any rule whose comment names its id. */
export function podNatLines(network: string, sandboxId: string, table = natTable()): string[] {
  const chain = dnatChainOf(network, sandboxId);
  return table.split('\n').filter((l) => l.includes(chain) || l.includes(`id: \\"${sandboxId}\\"`));
}

/** Every nat line that names `network` in a portmap comment (the jumps of its pods). */
export function networkNatLines(network: string, table = natTable()): string[] {
  return table.split('\n').filter((l) => l.includes(`name: \\"${network}\\"`));
}

/** Whether portmap's shared chains are there (so a test that found them must leave them). */
export function sharedHostportChainsExist(): boolean {
  return natTable().includes(':CNI-HOSTPORT-DNAT ');
}

/**
 * Removes what pods of `network` left: the jumps in CNI-HOSTPORT-DNAT whose comment
 * names it, the chains they jump to, and the chains of `sandboxIds`. For a test's
 * cleanup, so a failed DEL leaves nothing on the host; errors are ignored.
 */
export function removeNetworkHostports(network: string, sandboxIds: readonly string[] = []): void {
  const chains = new Set(sandboxIds.map((id) => dnatChainOf(network, id)));
  const listed = iptables('-L', 'CNI-HOSTPORT-DNAT', '-n', '--line-numbers');
  if (listed.status === 0) {
    const ours = listed.stdout
      .split('\n')
      .filter((l) => l.includes(`name: "${network}"`))
      .map((l) => ({ number: Number(l.split(/\s+/)[0]), target: l.split(/\s+/)[1] ?? '' }))
      .filter((r) => Number.isInteger(r.number) && r.number > 0);
    // Highest number first, so the numbers of the rest stay valid.
    for (const rule of ours.sort((a, b) => b.number - a.number)) {
      iptables('-D', 'CNI-HOSTPORT-DNAT', String(rule.number));
      if (rule.target.startsWith('CNI-DN-')) chains.add(rule.target);
    }
  }
  for (const chain of chains) {
    iptables('-F', chain);
    iptables('-X', chain);
  }
}

/** Removes portmap's shared chains and their jumps, unless a pod's jump is still in CNI-HOSTPORT-DNAT. */
export function removeSharedHostportChainsIfEmpty(): void {
  const table = natTable();
  if (!table.includes(':CNI-HOSTPORT-DNAT ') || table.includes('-A CNI-HOSTPORT-DNAT ')) return;
  iptables('-D', 'PREROUTING', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT');
  iptables('-D', 'OUTPUT', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT');
  iptables(
    '-D',
    'POSTROUTING',
    '-m',
    'comment',
    '--comment',
    'CNI portfwd requiring masquerade',
    '-j',
    'CNI-HOSTPORT-MASQ',
  );
  for (const chain of SHARED_CHAINS) {
    iptables('-F', chain);
    iptables('-X', chain);
  }
}
