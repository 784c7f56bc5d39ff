import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { CallActivity } from '../../src/adapters/grpc/call-interceptor.js';

/*
 * The count the warm-up waits on: it goes only when the real socket has had no call
 * running for a while (docs/cri.md, warm-up).
 */

describe('CallActivity', () => {
  it('is quiet only with no call running and none ended within the time asked', async () => {
    const activity = new CallActivity();
    assert.ok(activity.quietFor(0), 'no call yet');
    const endFirst = activity.callStarted();
    const endSecond = activity.callStarted();
    assert.equal(activity.quietFor(0), false, 'two running');
    endFirst(Status.OK, undefined);
    assert.equal(activity.quietFor(0), false, 'one still running');
    endSecond(Status.CANCELLED, undefined);
    assert.equal(activity.quietFor(60_000), false, 'one just ended');
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.ok(activity.quietFor(10), 'none ended in the last 10 ms');
  });
});
