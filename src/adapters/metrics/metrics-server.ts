import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { InvalidArgumentError } from '../../domain/errors.js';

/** A running /metrics endpoint. */
export interface MetricsServer {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

/** Parses `host:port` (`[::1]:9101` for IPv6; port 0: any free port). */
export function parseListenAddress(value: string, field = 'metrics.address'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new InvalidArgumentError(field, `"${value}" is not host:port`);
  return { host: match[1] ?? match[2]!, port };
}

/**
 * Serves the registry in Prometheus' text format on GET /metrics, and nothing else. It
 * is off unless configured: bind it where only the scraper reaches (loopback, or the
 * node's private address).
 */
export async function startMetricsServer(registry: Registry, listen: string, logger: Logger): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(listen);
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => {
        logger.warn({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const actual = typeof bound === 'object' && bound ? bound.port : port;
  logger.info({ address: `${host}:${actual}` }, 'serving metrics at /metrics');
  return {
    address: { host, port: actual },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
