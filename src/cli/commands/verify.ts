import type { Command } from 'commander';
import { Projections } from '../../projections/projections.js';
import { diffAgainstRuntime, inSync, orphanLabel } from '../../projections/runtime-diff.js';
import { withConfigOptions } from '../options.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { containerdTarget } from './support/containerd-target.js';
import { CHECKS, LogVerifier, type Check, type VerifyReport } from './support/log-verifier.js';
import { formatInFlight } from './support/in-flight.js';
import { print } from './support/output.js';
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
    const verifier = new LogVerifier();
    const progress = startProgress('verifying', await source.size());
    let n = 0;
    try {
      for await (const record of source.readRecords()) {
        verifier.add(record);
        progress.update(++n);
      }
    } finally {
      progress.stop();
    }
    // Holes retention made and recorded are not defects: say how many, keep the rest.
    if (source.pruned) await verifier.explainPruned(source.pruned.bind(source));
    const out = verifier.report();
    return { source: source.description, ...out };
  });
  if (options.json) print(JSON.stringify(report, null, 2));
  else printReport(report);
  if (report.violations.length > 0) process.exitCode = VIOLATION_EXIT_CODE;
}

function printReport(report: VerifyReport & { source: string }): void {
  const range = report.firstSeq === undefined ? 'an empty log' : `seq ${report.firstSeq}..${report.lastSeq}`;
  print(`verified ${report.records} records (${range}), ${report.streams} streams, from ${report.source}`);
  if (report.prunedGaps)
    print(
      `${report.prunedGaps} gaps are events retention removed and recorded (see \`cri-ledger events\`; NATS holds them: --nats)`,
    );
  print('');
  const rows = CHECKS.map((check) => {
    const found = report.violations.filter((v) => v.check === check);
    return [CHECK_TITLES[check], found.length === 0 ? 'ok' : `FAILED (${found.length})`];
  });
  rows.push(['sagas in flight', String(report.inFlight.length)]);
  for (const line of formatTable([{ header: 'CHECK' }, { header: 'RESULT' }], rows)) print(line);

  if (report.inFlight.length > 0) {
    print('');
    print(`IN FLIGHT (${report.inFlight.length})`);
    for (const line of formatInFlight(report.inFlight)) print(line);
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
