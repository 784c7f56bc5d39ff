import { createServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a nats-server that reads the client's side of the protocol and
 * can drop chosen publishes, the way a JetStream leader that dies with them in flight
 * does, while forwarding everything else untouched. It records the Nats-Msg-Id of every
 * publish it forwards, in order, so a test can see what the client sent and when.
 */
export interface NatsProxy {
  url: string;
  /** Msg ids of the publishes forwarded, in the order they went through. */
  forwarded: string[];
  stop(): Promise<void>;
}

const CRLF = Buffer.from('\r\n');

export async function startNatsProxy(
  upstreamPort: number,
  drop: (msgId: string | undefined) => boolean,
): Promise<NatsProxy> {
  const forwarded: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(upstreamPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const eol = pending.indexOf(CRLF);
        if (eol < 0) return;
        const line = pending.subarray(0, eol).toString('latin1');
        const tokens = line.split(' ').filter((t) => t !== '');
        const verb = tokens[0]?.toUpperCase();
        let size = eol + 2;
        let msgId: string | undefined;
        let isPublish = false;
        if (verb === 'HPUB' || verb === 'PUB') {
          isPublish = true;
          const total = Number(tokens.at(-1));
          if (pending.length < eol + 2 + total + 2) return;
          size = eol + 2 + total + 2;
          if (verb === 'HPUB') {
            const headerBytes = Number(tokens.at(-2));
            const headers = pending.subarray(eol + 2, eol + 2 + headerBytes).toString('latin1');
            msgId = /^Nats-Msg-Id:\s*(\S+)/im.exec(headers)?.[1];
          }
        }
        const frame = pending.subarray(0, size);
        pending = pending.subarray(size);
        if (isPublish && drop(msgId)) continue;
        if (isPublish && msgId !== undefined) forwarded.push(msgId);
        upstream.write(frame);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `nats://127.0.0.1:${port}`,
    forwarded,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
