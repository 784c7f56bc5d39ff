import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';

/** Everything `readable` delivers until it ends, as UTF-8. */
export function collect(readable: Readable | undefined): Promise<string> {
  assert.ok(readable, 'the stream was asked for');
  const chunks: Buffer[] = [];
  readable.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    if (readable.readableEnded) return resolve('');
    readable.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    readable.once('error', reject);
  });
}

/** Resolves once what `readable` delivered from now on matches `pattern`; returns all of it. */
export function seen(readable: Readable | undefined, pattern: RegExp): Promise<string> {
  assert.ok(readable, 'the stream was asked for');
  let text = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (pattern.test(text)) {
        readable.off('data', onData);
        resolve(text);
      }
    };
    readable.on('data', onData);
    readable.once('error', reject);
  });
}

/** The targets of this process's open descriptors that lie under `dir`. */
export function openFdsUnder(dir: string): string[] {
  const targets: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      targets.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // Closed while we looked (the readdir's own fd).
    }
  }
  return targets.filter((target) => target.startsWith(dir));
}
