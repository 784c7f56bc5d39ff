import { shortStream } from './summary.js';
import { formatTable } from './table.js';
import { formatDuration } from './time.js';

/** What every "operations in flight" table shows, whichever command prints it. */
export interface InFlightRow {
  stream: string;
  operation: string;
  name: string;
  startedSeq: number;
  lastStep: string;
  ageMs: number;
  correlationId?: string;
}

/** The table lines for sagas that began and have not ended, oldest first. */
export function formatInFlight(rows: readonly InFlightRow[]): string[] {
  const sorted = [...rows].sort((a, b) => a.startedSeq - b.startedSeq);
  return formatTable(
    [
      { header: 'STREAM' },
      { header: 'OPERATION' },
      { header: 'NAME' },
      { header: 'STARTED SEQ', align: 'right' },
      { header: 'LAST STEP' },
      { header: 'AGE', align: 'right' },
      { header: 'CORRELATION' },
    ],
    sorted.map((o) => [shortStream(o.stream), o.operation, o.name, String(o.startedSeq), o.lastStep, formatDuration(o.ageMs), o.correlationId ?? '-']),
  );
}
