import { LedgerClient } from '../../src/adapters/ledger-api/ledger-client.js';
import { decodeEvent, type EventType, type LedgerEvent } from '../../src/domain/events.js';

/** The events of one stream (`container-<id>`, `sandbox-<id>`), read back through the service's Ledger API, filtered to `types`. */
export async function streamEvents(
  socket: string,
  stream: string,
  types: readonly EventType[],
): Promise<LedgerEvent[]> {
  const client = LedgerClient.connect(socket);
  const out: LedgerEvent[] = [];
  try {
    for await (const r of client.readEvents({ streams: [stream] })) {
      const event = decodeEvent(r.json);
      if (types.includes(event.type)) out.push(event);
    }
  } finally {
    client.close();
  }
  return out;
}

/** The events of a session, by its data's `sessionId`, in log order. */
export function ofSession(events: readonly LedgerEvent[], sessionId: string): LedgerEvent[] {
  return events.filter((e) => (e.data as { sessionId?: string }).sessionId === sessionId);
}
