import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * The SPDY streaming client on spdystream, as client-go, kubectl and crictl are (built from
 * test/support/go/spdy-go-client by scripts/build-go-client.sh): the tests feed its stdin,
 * read its stdout and stderr, and read the raw error stream it saved.
 */

export const SPDY_GO_CLIENT_BINARY = fileURLToPath(new URL('../../go/spdy-go-client', import.meta.url));

export interface SpdyClientResult {
  /** The remote exit code (0 Success, N NonZeroExitCode), 1 another error, 2 no session. */
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** The error stream's bytes, as the server wrote them. */
  status: string;
}

export interface SpdyClientRun {
  readonly child: ChildProcess;
  readonly result: Promise<SpdyClientResult>;
}

/** Starts the client; `input` (if given) is written to its stdin, which is then closed. */
export function startSpdyClient(args: readonly string[], input?: Buffer | string, timeoutMs = 60_000): SpdyClientRun {
  const dir = mkdtempSync(join(tmpdir(), 'spdy-client-'));
  const statusFile = join(dir, 'status');
  const child = spawn(SPDY_GO_CLIENT_BINARY, [...args, '-status-file', statusFile], { stdio: 'pipe' });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => stdout.push(c));
  child.stderr.on('data', (c: Buffer) => stderr.push(c));
  child.stdin.on('error', () => undefined);
  if (input !== undefined) child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = new Promise<SpdyClientResult>((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      let status = '';
      try {
        status = readFileSync(statusFile, 'utf8');
      } catch {
        status = '';
      }
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString(), status });
    });
  });
  return { child, result };
}

export function runSpdyClient(args: readonly string[], input?: Buffer | string): Promise<SpdyClientResult> {
  return startSpdyClient(args, input).result;
}
