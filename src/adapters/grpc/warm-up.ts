import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { credentials, type Client, makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CallActivity } from './call-interceptor.js';
import { type SocketService, startSocketServer } from './socket-server.js';

/*
 * A fresh Node process answers its first few thousand calls at 2-4x the cost of a warm
 * one (V8 compiles and optimizes as it goes), and kubelet's first minutes after a node
 * reboot are when it starts every pod. So right after the socket serves, the service
 * calls itself: the same services behind a second socket server (private, in the state
 * dir, without the metrics and tracing observers, its log silenced), read-only calls
 * in turn, one at a time, each only once the real socket has been quiet for
 * QUIET_BEFORE_WARM_UP_MS (CallActivity), so kubelet's calls go first. Half go through the authority filter (as Go clients'
 * do), half natively. Nothing is written: unknown ids are NOT_FOUND.
 */

/** How long the real socket must have had no call running before a warm-up call goes. */
export const QUIET_BEFORE_WARM_UP_MS = 2;

/** One read-only call: a method of one of the services and its request. */
export interface WarmUpCall {
  service: ServiceDefinition;
  method: string;
  request: object;
}

export async function warmUp(o: {
  services: readonly SocketService[];
  calls: readonly WarmUpCall[];
  /** How many calls in all, going round `calls`. */
  total: number;
  stateDir: string;
  logger: Logger;
  /** Aborting it stops the calls (the service is stopping). */
  signal?: AbortSignal;
  /** The real socket's calls: each warm-up call waits until it has been quiet for QUIET_BEFORE_WARM_UP_MS. */
  activity?: CallActivity;
}): Promise<{ calls: number; ms: number }> {
  if (o.total <= 0 || o.calls.length === 0) return { calls: 0, ms: 0 };
  const started = performance.now();
  const socketPath = join(o.stateDir, `warm-up-${randomBytes(4).toString('hex')}.sock`);
  const server = await startSocketServer({
    socketPath,
    services: o.services.map(({ definition, implementation }) => ({ definition, implementation })),
    logger: o.logger.child({ component: 'warm-up' }, { level: 'silent' }),
  });
  const clients = new Map<ServiceDefinition, Client[]>();
  const clientFor = (service: ServiceDefinition, filtered: boolean): Client => {
    let pair = clients.get(service);
    if (!pair) {
      const Constructor = makeGenericClientConstructor(service, 'WarmUp');
      pair = [
        new Constructor(`unix:${socketPath}`, credentials.createInsecure()),
        // The socket path as :authority, as kubelet and crictl send it: the filtered way.
        new Constructor(`unix:${socketPath}`, credentials.createInsecure(), { 'grpc.default_authority': socketPath }),
      ];
      clients.set(service, pair);
    }
    return pair[filtered ? 1 : 0]!;
  };
  let made = 0;
  try {
    for (; made < o.total && !o.signal?.aborted; made++) {
      // Real calls first: a warm-up call running when one arrives makes it wait.
      while (o.activity && !o.activity.quietFor(QUIET_BEFORE_WARM_UP_MS) && !o.signal?.aborted)
        await new Promise((resolve) => setTimeout(resolve, QUIET_BEFORE_WARM_UP_MS));
      const { service, method, request } = o.calls[made % o.calls.length]!;
      const client = clientFor(service, made % 2 === 1) as Client & Record<string, unknown>;
      const invoke = client[method] as (
        request: object,
        options: { deadline: number },
        callback: (error: unknown) => void,
      ) => void;
      await new Promise<void>((resolve) =>
        invoke.call(client, request, { deadline: Date.now() + 10_000 }, () => resolve()),
      );
      await nextTurn();
    }
  } finally {
    for (const pair of clients.values()) for (const client of pair) client.close();
    await server.close(0);
  }
  return { calls: made, ms: performance.now() - started };
}
