import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import type { ContainerdClient } from '../../src/adapters/containerd/containerd-api.js';
import { ContainerdCallError, unaryCall } from '../../src/adapters/containerd/containerd-calls.js';

/*
 * How a failed containerd call is reported, with a stand-in client that answers as
 * containerd did (the call path to a real containerd is test/int/containerd-api.int.test.ts):
 * containerd sees the deadline too, and may end a call first with UNKNOWN and the
 * context's error rather than the client's DEADLINE_EXCEEDED.
 */

/** A client of service `Events` whose method `Call` fails with `code` and `details` after `afterMs`. */
function failingClient(code: Status, details: string, afterMs: number): ContainerdClient {
  class Events {
    static serviceName = 'containerd.services.events.v1.Events';
    Call(_request: object, _metadata: Metadata, _options: object, done: (error: ServiceError) => void) {
      setTimeout(() => done(Object.assign(new Error(details), { code, details, metadata: new Metadata() })), afterMs);
      return { cancel() {} };
    }
  }
  return new Events() as unknown as ContainerdClient;
}

const codeOf = async (call: Promise<unknown>): Promise<Status> => {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof ContainerdCallError, String(error));
  return error.code;
};

describe('a failed containerd call', () => {
  it("is DEADLINE_EXCEEDED when containerd ends it past its deadline with the context's error", async () => {
    const client = failingClient(Status.UNKNOWN, 'subscription error: context deadline exceeded', 80);
    assert.equal(await codeOf(unaryCall(client, 'Call', {}, { timeoutMs: 20 })), Status.DEADLINE_EXCEEDED);
  });

  it('keeps UNKNOWN before the deadline, and for any other message', async () => {
    const early = failingClient(Status.UNKNOWN, 'subscription error: context deadline exceeded', 0);
    assert.equal(await codeOf(unaryCall(early, 'Call', {}, { timeoutMs: 60_000 })), Status.UNKNOWN);
    const other = failingClient(Status.UNKNOWN, 'shim disconnected', 80);
    assert.equal(await codeOf(unaryCall(other, 'Call', {}, { timeoutMs: 20 })), Status.UNKNOWN);
  });
});
