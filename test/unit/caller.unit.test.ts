import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { callerOf } from '../../src/adapters/cri/caller.js';

/** A stand-in for a grpc-js server call: its deadline, its cancelled flag and 'cancelled' event. */
function fakeCall(deadline: Date | number) {
  const call = Object.assign(new EventEmitter(), { cancelled: false, getDeadline: () => deadline });
  return call;
}

describe('the caller of a CRI request, as the gRPC edge sees it', () => {
  const T0 = Date.parse('2026-11-28T10:00:00.000Z');

  it('waits while the deadline is ahead and the call is not cancelled', () => {
    let now = T0;
    const c = callerOf(fakeCall(new Date(T0 + 2_000)), () => now);
    assert.equal(c.deadline, '2026-11-28T10:00:02.000Z');
    assert.equal(c.gaveUp(), undefined);
    now = T0 + 1_999;
    assert.equal(c.gaveUp(), undefined);
  });

  it('gave up at the deadline once it has passed, even if grpc-js also cancelled the call', () => {
    let now = T0;
    const call = fakeCall(new Date(T0 + 2_000));
    const c = callerOf(call, () => now);
    now = T0 + 2_500;
    call.cancelled = true;
    call.emit('cancelled');
    assert.deepEqual(c.gaveUp(), { at: '2026-11-28T10:00:02.000Z', reason: 'deadline' });
  });

  it('gave up when cancelled before its deadline, at the time of the cancellation', () => {
    let now = T0;
    const call = fakeCall(Infinity);
    const c = callerOf(call, () => now);
    assert.equal(c.deadline, undefined);
    now = T0 + 700;
    call.emit('cancelled');
    now = T0 + 5_000;
    assert.deepEqual(c.gaveUp(), { at: '2026-11-28T10:00:00.700Z', reason: 'cancelled' });
  });

  it('sees a call whose stream closed without the event (the cancelled flag alone)', () => {
    const call = fakeCall(Infinity);
    const c = callerOf(call, () => T0);
    call.cancelled = true;
    assert.equal(c.gaveUp()?.reason, 'cancelled');
  });
});
