import type { Command } from 'commander';
import { InvalidArgumentError } from '../../domain/errors.js';
import type { LedgerEvent } from '../../domain/events.js';
import { withConfigOptions } from '../options.js';
import { withSource, withSourceOptions } from '../sources/open-source.js';
import { pictureFormat, writePicture } from './support/pictures.js';
import { parseTimeArg } from './support/time.js';

interface ReportOptions {
  since: string;
  until?: string;
  format: string;
  output?: string;
}

/**
 * `cri-ledger report --since TIME [--until TIME]`: what happened on the node in a time
 * window, as one self-contained HTML page (or SVG): every pod and container active in
 * it as lanes, failures and slow steps marked, the anomalies listed, events counted.
 * With `--nats URL --node '*'` (or a list), the same for a fleet: each lane and anomaly
 * named with its node.
 */
export function registerReport(program: Command): void {
  const command = program
    .command('report')
    .description('a picture of what happened on the node in a time window (self-contained HTML)')
    .requiredOption('--since <time>', 'from TIME (RFC 3339, or a duration ago: 1h)')
    .option('--until <time>', 'to TIME (default: now)')
    .option('--format <format>', 'html or svg', 'html')
    .option('--output <file>', 'write to FILE instead of stdout');
  withSourceOptions(withConfigOptions(command)).action((options: ReportOptions, cmd: Command) =>
    runReport(options, cmd),
  );
}

async function runReport(options: ReportOptions, cmd: Command): Promise<void> {
  const format = pictureFormat(options.format);
  if (format === 'text') throw new InvalidArgumentError('--format', 'a report is html or svg');
  const since = parseTimeArg(options.since, '--since');
  const until = options.until === undefined ? undefined : parseTimeArg(options.until, '--until');
  await withSource(cmd, async (source) => {
    const events: LedgerEvent[] = [];
    for await (const e of source.readEvents({ since, ...(until ? { until } : {}) })) events.push(e.event);
    await writePicture(events, {
      title: `cri-ledger report: ${since} to ${until ?? 'now'}`,
      subtitle: `${events.length} events · from ${source.description}`,
      format,
      output: options.output,
    });
  });
}
