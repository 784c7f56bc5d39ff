import type { Projections } from './projections.js';

/*
 * The log's view against containerd's, in the service's namespace: what containerd holds
 * that the log never heard of (orphans: left by a crash before the first event, or by
 * hand), and what the log says exists that containerd lacks (missing). Pure: the
 * inventory is read by an adapter; startup reconciliation and `verify
 * --against-containerd` both use this.
 */

/** containerd's objects, as far as this comparison needs them. */
export interface RuntimeInventory {
  /** Container records; `kind` from cri-ledger's kind label (`container`, `sandbox`), '' when unlabeled. */
  containers: Array<{ id: string; kind: string }>;
  /** Keys of active (writable) snapshots. */
  activeSnapshots: string[];
  /** cri-ledger's own leases (a pull's, an image view's), with when containerd created them. */
  leases?: Array<{ id: string; createdAt: string }>;
}

export interface RuntimeDiff {
  /** Labeled container records whose id the log does not know. */
  orphanContainers: Array<{ id: string; kind: string }>;
  /** Active snapshots keyed like a container or sandbox id that the log does not know. */
  orphanSnapshots: string[];
  /** Containers and sandboxes the log has (past creation) whose containerd record is gone. */
  missing: Array<{ kind: 'container' | 'sandbox'; id: string; state: string }>;
  /** cri-ledger's leases created before `leasesBefore`: their pull or view died with an earlier process. */
  orphanLeases: string[];
}

const RESOURCE_KEY = /^[0-9a-f]{64}$/;

/**
 * `leasesBefore` (ISO 8601): when this process started. A lease of cri-ledger's older
 * than that belongs to an operation of a process that is gone (a pull's lease expires
 * only after an hour, and keeps what the pull wrote until then). Without it (`verify`,
 * which cannot tell a running pull's lease from a dead one) leases are not compared.
 */
export function diffAgainstRuntime(
  p: Projections,
  inventory: RuntimeInventory,
  o: { leasesBefore?: string } = {},
): RuntimeDiff {
  const known = (id: string): boolean => p.containers.get(id) !== undefined || p.sandboxes.get(id) !== undefined;
  const inRuntime = new Set(inventory.containers.map((c) => c.id));
  const recordOwnsSnapshot = new Set(inventory.containers.map((c) => c.id));
  const missing: RuntimeDiff['missing'] = [];
  for (const c of p.containers.values())
    if (c.state !== 'CREATING' && !inRuntime.has(c.id)) missing.push({ kind: 'container', id: c.id, state: c.state });
  for (const s of p.sandboxes.values())
    if (s.state !== 'CREATING' && !inRuntime.has(s.id)) missing.push({ kind: 'sandbox', id: s.id, state: s.state });
  return {
    orphanContainers: inventory.containers.filter((c) => c.kind !== '' && !known(c.id)),
    orphanSnapshots: inventory.activeSnapshots.filter(
      (key) => RESOURCE_KEY.test(key) && !known(key) && !recordOwnsSnapshot.has(key),
    ),
    missing,
    orphanLeases:
      o.leasesBefore === undefined
        ? []
        : (inventory.leases ?? [])
            .filter((l) => Date.parse(l.createdAt) < Date.parse(o.leasesBefore!))
            .map((l) => l.id),
  };
}

/** Whether the two views agree. */
export function inSync(diff: RuntimeDiff): boolean {
  return (
    diff.orphanContainers.length === 0 &&
    diff.orphanSnapshots.length === 0 &&
    diff.missing.length === 0 &&
    diff.orphanLeases.length === 0
  );
}

/** How an orphan container reads in reports and events: `container` or `pause container`. */
export function orphanLabel(kind: string): string {
  return kind === 'sandbox' ? 'pause container' : 'container';
}
