import { rmSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { FromTreeRemover, ToTreeRemover } from './tree-remover.js';

/*
 * The thread that removes directory trees for src/adapters/fs/tree-remover.ts: each job's
 * paths in order, each with everything under it, in one go on this thread.
 */

const port = parentPort;
if (!port) throw new Error('tree-remover-worker runs as a worker thread');
port.on('message', ({ id, paths }: ToTreeRemover) => {
  let reply: FromTreeRemover = { id };
  try {
    for (const path of paths) rmSync(path, { recursive: true, force: true, maxRetries: 2 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    reply = { id, error: { message: e.message, ...(e.code ? { code: e.code } : {}) } };
  }
  port.postMessage(reply);
});
