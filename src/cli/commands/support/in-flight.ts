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
  /** The step running when the caller's deadline passed (OperationStalled). */
  stalled?: { step: string };
}

/** The table lines for sagas that began and have not ended, oldest first. */
export function formatInFlight(rows: readonly InFlightRow[]): string[] {
  const sorted = [...rows].sort((a, b) => a.startedSeq - b.startedSeq);
  // The column appears only when something stalled: the usual table stays as it was.
  const stalls = sorted.some((o) => o.stalled);
  return formatTable(
    [
      { header: 'STREAM' },
      { header: 'OPERATION' },
      { header: 'NAME' },
      { header: 'STARTED SEQ', align: 'right' },
      { header: 'LAST STEP' },
      { header: 'AGE', align: 'right' },
      { header: 'CORRELATION' },
      ...(stalls ? [{ header: 'STALLED IN' }] : []),
    ],
    sorted.map((o) => [
      shortStream(o.stream),
      o.operation,
      o.name,
      String(o.startedSeq),
      o.lastStep,
      formatDuration(o.ageMs),
      o.correlationId ?? '-',
      ...(stalls ? [o.stalled?.step ?? '-'] : []),
    ]),
  );
}
