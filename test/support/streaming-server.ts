import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { SessionKind, StreamingServer } from '../../src/adapters/streaming/contracts.js';
import { type StreamingServerOptions, startStreamingServer } from '../../src/adapters/streaming/streaming-server.js';
import { type FakePayload, FakeSessionHandlers } from './fake-session-handlers.js';

/** A streaming server on a free loopback port with the fake handlers; options override the defaults. */
export async function startFakeStreaming(
  options: Partial<StreamingServerOptions<FakePayload>> = {},
): Promise<{ server: StreamingServer<FakePayload>; handlers: FakeSessionHandlers }> {
  const handlers = new FakeSessionHandlers();
  const server = await startStreamingServer<FakePayload>({
    address: '127.0.0.1',
    port: 0,
    idleTimeoutMs: 60_000,
    tokenTtlMs: 60_000,
    handlers,
    logger: pino({ level: 'silent' }),
    streamsOf: (payload) => payload,
    streamCreationTimeoutMs: 5_000,
    shutdownGraceMs: 2_000,
    ...options,
  });
  return { server, handlers };
}

/** An exec or attach payload: stdout and stderr on, stdin and tty off unless said. */
export function payload(command: readonly string[], streams: Partial<FakePayload> = {}): FakePayload {
  return { stdin: false, stdout: true, stderr: true, tty: false, command, ...streams };
}

export function url(server: StreamingServer<FakePayload>, kind: SessionKind, p: FakePayload): string {
  return server.register(kind, p);
}

/** A self-signed certificate for 127.0.0.1, made with openssl. */
export function selfSignedCertificate(): { certFile: string; keyFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'streaming-tls-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}
