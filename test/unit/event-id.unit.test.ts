import assert from 'node:assert/strict';
import { it } from 'node:test';
import { newEventId } from '../../src/adapters/ids/event-id.js';
import { EVENT_ID } from '../../src/domain/ids.js';

it('makes ULIDs that increase strictly, within one millisecond too', () => {
  const ms = Date.parse('2026-11-28T10:00:00Z');
  const ids = [newEventId(ms), ...Array.from({ length: 1000 }, () => newEventId(ms)), newEventId(ms + 1)];
  for (const id of ids) assert.ok(EVENT_ID.safeParse(id).success, id);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} !< ${ids[i]}`);
  assert.equal(new Set(ids).size, ids.length);
});

it('encodes the time in its first ten characters, so ids sort by it', () => {
  const ms = Date.parse('2027-01-01T00:00:00Z');
  const id = newEventId(ms);
  const decoded = id
    .slice(0, 10)
    .split('')
    .reduce((acc, ch) => acc * 32 + '0123456789ABCDEFGHJKMNPQRSTVWXYZ'.indexOf(ch), 0);
  assert.equal(decoded, ms);
  // A clock that steps back does not make ids go back.
  assert.ok(newEventId(Date.parse('2026-01-01T00:00:00Z')) > id);
});
