import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** A new event id: a ULID, strictly increasing within this process even in one millisecond. */
export function newEventId(): string {
  return next();
}
