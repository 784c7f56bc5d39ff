import { readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LevelDbEventLog } from '../../src/adapters/eventlog/leveldb-event-log.js';
import { parseStream } from '../../src/domain/ids.js';

/*
 * runc makes a cgroup per container (under every controller, on these cgroup v1
 * machines) and removes it on `runc delete`. A test whose cleanup kills the shims
 * (containerd's private instance going away with pods still running) never gets there,
 * so the cgroups would stay behind. runc's state for each container names them. And
 * a pod removed through the CRI can leave its cgroup too: the test pause image's shell
 * has a `sleep` child, which dies with it but may be reaped only after runc's delete
 * tried to remove the cgroup (the real pause binary has no child).
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

const RETRIES = 50;
const RETRY_MS = 20;

/** The cgroup directories runc recorded for the containers under `runcRoot` (`<root>/<namespace>/<id>/state.json`). */
async function recordedCgroups(runcRoot: string): Promise<string[]> {
  const paths: string[] = [];
  for (const namespace of await readdir(runcRoot).catch(() => [] as string[])) {
    for (const id of await readdir(join(runcRoot, namespace)).catch(() => [] as string[])) {
      const state = await readFile(join(runcRoot, namespace, id, 'state.json'), 'utf8').catch(() => undefined);
      if (state === undefined) continue;
      const recorded = (JSON.parse(state) as { cgroup_paths?: Record<string, string> }).cgroup_paths ?? {};
      paths.push(...Object.values(recorded).filter((p) => p.startsWith('/sys/fs/cgroup/')));
    }
  }
  return [...new Set(paths)];
}

async function rmdirWhenEmpty(path: string): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(path);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY' || attempt >= RETRIES) return false;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
}

/**
 * Removes the default cgroup (`/<namespace>/<id>` under every controller) of every
 * container and sandbox the log in `ledgerDir` ever reserved; returns those still busy.
 * The log must not be open elsewhere (the service is stopped).
 */
export async function removeLedgerCgroups(ledgerDir: string, namespace: string): Promise<string[]> {
  const ids = new Set<string>();
  const log = await LevelDbEventLog.open({ dir: ledgerDir, node: 'test-cleanup' });
  try {
    for await (const event of log.readAll({ types: ['NameReserved', 'SandboxReserved'] }))
      ids.add(parseStream(event.stream).id);
  } finally {
    await log.close();
  }
  const left: string[] = [];
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    for (const id of ids) {
      const path = join(CGROUP_ROOT, controller, namespace, id);
      if (!(await rmdirWhenEmpty(path))) left.push(path);
    }
  }
  return left;
}

/**
 * Removes the cgroups runc recorded under `runcRoot`, once the processes in them have
 * exited (a cgroup is busy until its last process is reaped). One still busy after
 * about a second is left and named in the result.
 */
export async function removeRuncCgroups(runcRoot: string): Promise<string[]> {
  const left: string[] = [];
  for (const path of await recordedCgroups(runcRoot)) if (!(await rmdirWhenEmpty(path))) left.push(path);
  return left;
}

/**
 * Removes these top-level cgroups (and what is under them) in every controller, once
 * empty: rmdir refuses a cgroup that still has tasks or children, so one in use stays.
 * runc names a pod's default parent after its containerd namespace (`/<namespace>`):
 * a test or bench running in a namespace of its own removes that one. Not `cri-ledger`,
 * which tests share (the suite's script removes that one at the end).
 */
export async function removeCgroupParents(parents: readonly string[]): Promise<void> {
  const remove = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => []))
      if (entry.isDirectory()) await remove(join(dir, entry.name));
    await rmdirWhenEmpty(dir);
  };
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[]))
    for (const parent of parents) await remove(join(CGROUP_ROOT, controller, parent));
}
