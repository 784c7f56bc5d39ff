import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  Metadata,
  Server,
  type ServerUnaryCall,
  type sendUnaryData,
  ServerCredentials,
  type ServiceError,
  status as Status,
} from '@grpc/grpc-js';
import {
  Http2UnaryTransport,
  type UnaryCallTiming,
  type UnaryMethod,
} from '../../src/adapters/containerd/unary-http2.js';

/*
 * The unary transport containerd's calls go over, against a gRPC server of another
 * implementation (grpc-js's) on a unix socket: answers, statuses, deadlines, cancels, a
 * server that is not there yet, one that goes away mid-call. The calls to a real
 * containerd are test/int/containerd-*.int.test.ts.
 */

type Request = { action: string; bytes?: number };
type Reply = { echoed: string; namespace: string; lease: string; deadlineSet: boolean; body?: string };

const json = {
  serialize: (value: unknown): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): unknown => JSON.parse(bytes.toString()),
};
const ECHO: UnaryMethod & Record<string, unknown> = {
  path: '/test.Echo/Call',
  requestStream: false,
  responseStream: false,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
};

let dir: string;
let socketPath: string;
let server: Server | undefined;
/** Calls the server holds without answering, with how they ended. */
const held: Array<{ cancelled: Promise<void> }> = [];

async function startServer(): Promise<Server> {
  const s = new Server();
  s.addService(
    { Call: ECHO as never },
    {
      Call(call: ServerUnaryCall<Request, Reply>, done: sendUnaryData<Reply>) {
        const { action, bytes } = call.request;
        if (action === 'hold') {
          held.push({ cancelled: new Promise((resolve) => call.on('cancelled', () => resolve())) });
          return;
        }
        if (action === 'fail') {
          const trailer = new Metadata();
          trailer.set('why', 'asked to');
          done({ code: Status.FAILED_PRECONDITION, details: 'failed: as asked (100%)', metadata: trailer });
          return;
        }
        done(null, {
          echoed: action,
          namespace: String(call.metadata.get('containerd-namespace')[0] ?? ''),
          lease: String(call.metadata.get('containerd-lease')[0] ?? ''),
          deadlineSet: Number.isFinite(Number(call.getDeadline())),
          ...(bytes ? { body: 'x'.repeat(bytes) } : {}),
        });
      },
    },
  );
  await new Promise<void>((resolve, reject) =>
    s.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );
  server = s;
  return s;
}

async function stopServer(): Promise<void> {
  server?.forceShutdown();
  server = undefined;
}

/** A call the server holds unanswered, once the server has it, and when the server saw it end. */
async function heldCall(
  t: Http2UnaryTransport,
  timing: UnaryCallTiming = {},
): Promise<{ call: Promise<unknown>; cancelled: Promise<void> }> {
  const before = held.length;
  const call = t.call(ECHO, { action: 'hold' }, timing);
  call.catch(() => undefined); // asserted by the test
  while (held.length === before) await new Promise((resolve) => setTimeout(resolve, 10));
  return { call, cancelled: held[before]!.cancelled };
}

const codeOf = async (call: Promise<unknown>): Promise<{ code: Status; details: string; metadata: Metadata }> => {
  const error = (await call.then(
    () => assert.fail('the call succeeded'),
    (e: unknown) => e,
  )) as ServiceError;
  return { code: error.code, details: error.details, metadata: error.metadata };
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cri-ledger-unary-'));
  socketPath = join(dir, 'grpc.sock');
});
afterEach(stopServer);
after(() => rmSync(dir, { recursive: true, force: true }));

describe('a unary call over the HTTP/2 transport', () => {
  it("answers with the server's reply and carries the namespace, the lease and the deadline", async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, { 'containerd-namespace': 'ns-a' }, 1024 * 1024);
    const reply = (await t.call(
      ECHO,
      { action: 'hi' },
      {
        deadline: Date.now() + 10_000,
        headers: { 'containerd-lease': 'lease-1' },
      },
    )) as Reply;
    assert.deepEqual(reply, { echoed: 'hi', namespace: 'ns-a', lease: 'lease-1', deadlineSet: true });
    const noDeadline = (await t.call(ECHO, { action: 'again' })) as Reply;
    assert.equal(noDeadline.deadlineSet, false);
    t.close();
  });

  it('fails with the status, details and trailers the server sent', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    const failure = await codeOf(t.call(ECHO, { action: 'fail' }));
    assert.equal(failure.code, Status.FAILED_PRECONDITION);
    assert.equal(failure.details, 'failed: as asked (100%)');
    assert.deepEqual(failure.metadata.get('why'), ['asked to']);
    t.close();
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED, and the server sees it end', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    const failure = await codeOf(t.call(ECHO, { action: 'hold' }, { deadline: Date.now() + 200 }));
    assert.equal(failure.code, Status.DEADLINE_EXCEEDED);
    await held.at(-1)!.cancelled;
    t.close();
  });

  it('ends a call on abort with CANCELLED, and the server sees it end', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    const abort = new AbortController();
    const { call, cancelled } = await heldCall(t, { signal: abort.signal });
    abort.abort();
    assert.equal((await codeOf(call)).code, Status.CANCELLED);
    await cancelled;
    t.close();
  });

  it('is UNAVAILABLE while nothing listens, and the next call after the server is back gets through', async () => {
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    assert.equal((await codeOf(t.call(ECHO, { action: 'early' }))).code, Status.UNAVAILABLE);
    await startServer();
    assert.equal(((await t.call(ECHO, { action: 'late' })) as Reply).echoed, 'late');
    t.close();
  });

  it('is UNAVAILABLE when the server goes away during a call, and reconnects for the next', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    const { call } = await heldCall(t, { deadline: Date.now() + 30_000 });
    await stopServer();
    assert.equal((await codeOf(call)).code, Status.UNAVAILABLE);
    await startServer();
    assert.equal(((await t.call(ECHO, { action: 'back' })) as Reply).echoed, 'back');
    t.close();
  });

  it('refuses a reply over the size limit with RESOURCE_EXHAUSTED', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 64 * 1024);
    assert.equal((await codeOf(t.call(ECHO, { action: 'big', bytes: 200 * 1024 }))).code, Status.RESOURCE_EXHAUSTED);
    assert.equal(((await t.call(ECHO, { action: 'small', bytes: 1024 })) as Reply).body?.length, 1024);
    t.close();
  });

  it('after close, fails the calls in flight with CANCELLED and new ones with UNAVAILABLE', async () => {
    await startServer();
    const t = new Http2UnaryTransport(socketPath, {}, 1024 * 1024);
    const { call } = await heldCall(t);
    t.close();
    assert.equal((await codeOf(call)).code, Status.CANCELLED);
    assert.equal((await codeOf(t.call(ECHO, { action: 'after' }))).code, Status.UNAVAILABLE);
  });
});
