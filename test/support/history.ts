import { CURRENT_VERSION, type LedgerEvent, type NewEvent } from '../../src/domain/events.js';
import { Projections } from '../../src/projections/projections.js';
import { time } from './fixtures.js';

/**
 * Stamps events as the log would (seq, version, id, time), without I/O, so projection
 * specs read `given(history).then(...)`.
 */
export function history(...entries: Array<[stream: string, event: NewEvent]>): LedgerEvent[] {
  const versions = new Map<string, number>();
  return entries.map(([stream, e], i) => {
    const version = (versions.get(stream) ?? 0) + 1;
    versions.set(stream, version);
    return {
      id: `01JT${String(i).padStart(22, '0')}`,
      seq: i + 1,
      stream,
      version,
      type: e.type,
      v: CURRENT_VERSION[e.type],
      at: time(i),
      node: 'test-node',
      correlationId: e.correlationId,
      causationId: e.causationId ?? null,
      data: e.data,
    } as LedgerEvent;
  });
}

export function given(...entries: Array<[stream: string, event: NewEvent]>): Projections {
  const projections = new Projections();
  projections.applyAll(history(...entries));
  return projections;
}
