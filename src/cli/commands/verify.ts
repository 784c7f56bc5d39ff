import type { Command } from 'commander';
import { Projections } from '../../projections/projections.js';
import { diffAgainstRuntime, inSync, orphanLabel } from '../../projections/runtime-diff.js';
import { FileSnapshotStore, snapshotDir } from '../../adapters/snapshots/file-snapshot-store.js';
import { configFrom, withConfigOptions } from '../options.js';
import type { EventSource } from '../sources/event-source.js';
import { chooseSource } from '../sources/open-source.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { containerdTarget } from './support/containerd-target.js';
import { CHECKS, LogVerifier, type Check, type VerifyReport } from './support/log-verifier.js';
import { formatInFlight } from './support/in-flight.js';
import { print } from './support/output.js';
import { SnapshotChecker, snapshotViolates, type SnapshotCheck } from './support/snapshot-checker.js';
import { startProgress } from './support/progress.js';
import { formatTable } from './support/table.js';
import { requireOneNode } from './support/nodes.js';

/** The exit code when the log breaks an invariant (1 is "could not run", 2 is usage). */
export const VIOLATION_EXIT_CODE = 3;

const CHECK_TITLES: Record<Check, string> = {
  decode: 'every record decodes',
  seq: 'seqs contiguous',
  version: 'stream versions contiguous',
  time: 'times never go back',
  names: 'one live holder per name',
  sagas: 'sagas end once',
  snapshots: 'snapshots match a full replay',
};

export function registerVerify(program: Command): void {
  const command = program
    .command('verify')
    .description(`check the log's invariants; exits ${VIOLATION_EXIT_CODE} when one is broken`)
    .option('--json', 'print the report as JSON')
    .option(
      '--against-containerd',
      "also compare the log's containers and sandboxes with containerd's: the service's own through the socket; " +
        'with --db or --nats, pass --containerd-address and --containerd-namespace',
    );
  withSourceOptions(withConfigOptions(command)).action(
    (options: { json?: boolean; againstContainerd?: boolean }, cmd: Command) => runVerify(options, cmd),
  );
}

async function runVerify(options: { json?: boolean; againstContainerd?: boolean }, cmd: Command): Promise<void> {
  if (options.againstContainerd) return runAgainstContainerd(options, cmd);
  const report = await withSource(cmd, async (source) => {
    requireOneNode(source, 'verify');
    // Listed and read before the log: a snapshot is never past the head read after it.
    const snapshots = await openSnapshotChecker(cmd, source);
    const verifier = new LogVerifier();
    const progress = startProgress('verifying', await source.size());
    let n = 0;
    try {
      for await (const record of source.readRecords()) {
        verifier.add(record);
        snapshots?.add(record);
        progress.update(++n);
      }
    } finally {
      progress.stop();
    }
    // Holes retention made and recorded are not defects: say how many, keep the rest.
    if (source.pruned) await verifier.explainPruned(source.pruned.bind(source));
    const out = verifier.report();
    const checked = snapshots?.listError === undefined ? snapshots?.report() : undefined;
    for (const check of checked ?? []) {
      if (snapshotViolates(check))
        out.violations.push({
          check: 'snapshots',
          seq: check.seq,
          detail: `${check.location}: ${check.result}${check.detail ? ` (${check.detail})` : ''}`,
        });
    }
    return {
      source: source.description,
      ...out,
      ...(checked ? { snapshots: checked } : {}),
      ...(snapshots?.listError ? { snapshotsNotChecked: snapshots.listError } : {}),
    };
  });
  if (options.json) print(JSON.stringify(report, null, 2));
  else printReport(report);
  if (report.violations.length > 0) process.exitCode = VIOLATION_EXIT_CODE;
}

/**
 * The snapshots of the log being verified: in `<dir>/snapshots` for `--db DIR`, where the
 * running service says it keeps them for the socket. None for NATS (no node's disk).
 */
async function openSnapshotChecker(cmd: Command, source: EventSource): Promise<SnapshotChecker | undefined> {
  const choice = chooseSource(cmd.opts<{ db?: string | boolean; nats?: string | boolean }>(), configFrom(cmd));
  if (choice.kind === 'nats') return undefined;
  let dir: string | undefined;
  if (choice.kind === 'db') dir = snapshotDir(choice.dir);
  else {
    const status = await source.status();
    dir = status.kind === 'ledger' ? status.snapshotDir : undefined;
  }
  return dir === undefined
    ? SnapshotChecker.none('the service keeps no snapshots')
    : SnapshotChecker.open(new FileSnapshotStore(dir));
}

function snapshotsResult(checks: SnapshotCheck[] | undefined, failed: number, notChecked?: string): string {
  if (notChecked) return `not checked (${notChecked})`;
  if (checks === undefined) return 'not checked (no snapshots in a NATS stream)';
  if (checks.length === 0) return 'none stored';
  if (failed > 0) return `FAILED (${failed})`;
  const compared = checks.filter((c) => c.result === 'ok').length;
  return compared === checks.length
    ? `ok (${compared})`
    : `ok (${compared}; ${checks.length - compared} skipped at start)`;
}

function printReport(
  report: VerifyReport & { source: string; snapshots?: SnapshotCheck[]; snapshotsNotChecked?: string },
): void {
  const range = report.firstSeq === undefined ? 'an empty log' : `seq ${report.firstSeq}..${report.lastSeq}`;
  print(`verified ${report.records} records (${range}), ${report.streams} streams, from ${report.source}`);
  if (report.prunedGaps)
    print(
      `${report.prunedGaps} gaps are events retention removed and recorded (see \`cri-ledger events\`; NATS holds them: --nats)`,
    );
  print('');
  const rows = CHECKS.map((check) => {
    const found = report.violations.filter((v) => v.check === check);
    if (check === 'snapshots')
      return [CHECK_TITLES[check], snapshotsResult(report.snapshots, found.length, report.snapshotsNotChecked)];
    return [CHECK_TITLES[check], found.length === 0 ? 'ok' : `FAILED (${found.length})`];
  });
  rows.push(['sagas in flight', String(report.inFlight.length)]);
  for (const line of formatTable([{ header: 'CHECK' }, { header: 'RESULT' }], rows)) print(line);

  if (report.inFlight.length > 0) {
    print('');
    print(`IN FLIGHT (${report.inFlight.length})`);
    for (const line of formatInFlight(report.inFlight)) print(line);
  }
  const notes = (report.snapshots ?? []).filter((c) => c.result !== 'ok' && !snapshotViolates(c));
  if (notes.length > 0) {
    print('');
    print(`SNAPSHOTS A START SKIPS (${notes.length})`);
    for (const c of notes) print(`${c.location}: ${c.result}${c.detail ? ` (${c.detail})` : ''}`);
  }
  if (report.violations.length > 0) {
    print('');
    print(`VIOLATIONS (${report.violations.length})`);
    const rows = report.violations.map((v) => [v.seq === undefined ? '-' : String(v.seq), v.check, v.detail]);
    for (const line of formatTable(
      [{ header: 'SEQ', align: 'right' }, { header: 'CHECK' }, { header: 'DETAIL' }],
      rows,
    ))
      print(line);
  }
  print('');
  print(
    report.violations.length === 0
      ? 'result: ok'
      : `result: ${report.violations.length} violation${report.violations.length === 1 ? '' : 's'}`,
  );
}

/**
 * `verify --against-containerd`: the log's state, replayed, against what containerd
 * holds in the service's namespace. Prints the differences; exits 3 when there are any.
 */
async function runAgainstContainerd(options: { json?: boolean }, cmd: Command): Promise<void> {
  const [{ connectContainerd }, { readInventory }, { DEFAULT_IMAGE_SNAPSHOTTER }] = await Promise.all([
    import('../../adapters/containerd/containerd-api.js'),
    import('../../adapters/containerd/containerd-inventory.js'),
    import('../../adapters/containerd/containerd-images.js'),
  ]);
  const { target, projections } = await withSource(cmd, async (source) => {
    requireOneNode(source, 'verify');
    const target = await containerdTarget(cmd, source);
    const p = new Projections();
    for await (const { event } of source.readEvents()) p.apply(event);
    return { target, projections: p };
  });
  if (target.disagreement) console.error(`cri-ledger verify: note: ${target.disagreement}`);
  const api = connectContainerd({ address: target.address, namespace: target.namespace });
  let diff;
  try {
    diff = diffAgainstRuntime(projections, await readInventory(api, DEFAULT_IMAGE_SNAPSHOTTER));
  } finally {
    api.close();
  }
  if (options.json) print(JSON.stringify({ containerd: target, ...diff }, null, 2));
  else {
    print(`compared the log with containerd at ${target.address}, namespace ${target.namespace} (from ${target.from})`);
    const rows = [
      ...diff.orphanContainers.map((c) => ['in containerd only', orphanLabel(c.kind), c.id]),
      ...diff.orphanSnapshots.map((key) => ['in containerd only', 'snapshot', key]),
      ...diff.missing.map((m) => ['in the log only', `${m.kind} (${m.state})`, m.id]),
    ];
    if (rows.length === 0) print('in sync: no differences');
    else for (const line of formatTable([{ header: 'WHERE' }, { header: 'WHAT' }, { header: 'ID' }], rows)) print(line);
  }
  if (!inSync(diff)) process.exitCode = VIOLATION_EXIT_CODE;
}
