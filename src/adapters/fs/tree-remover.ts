import { Worker } from 'node:worker_threads';

/*
 * Removing a container's or a pod's directories off the event loop. fs.promises.rm
 * (Node 20) walks a tree in JavaScript: an lstat, a readdir, an unlink or rmdir per
 * entry, each a trip through the thread pool and back to the loop. Under kubelet's load
 * the loop is busy, each trip waits for it, and those walks took 2.9 s of the loop in a
 * profiled kubelet-load run (docs/benchmarks.md). Here one worker thread, started with the
 * first removal and kept (unreferenced while idle), removes every tree of a job in one
 * go: one message each way per job.
 */

export interface ToTreeRemover {
  id: number;
  paths: readonly string[];
}

export interface FromTreeRemover {
  id: number;
  error?: { message: string; code?: string };
}

class TreeRemover {
  readonly #worker = new Worker(new URL('./tree-remover-worker.js', import.meta.url));
  readonly #jobs = new Map<number, { resolve(): void; reject(error: Error): void }>();
  #next = 0;
  dead = false;

  constructor() {
    this.#worker.unref();
    this.#worker.on('message', ({ id, error }: FromTreeRemover) => {
      const job = this.#jobs.get(id);
      if (!job) return;
      this.#jobs.delete(id);
      if (this.#jobs.size === 0) this.#worker.unref();
      if (error) job.reject(Object.assign(new Error(error.message), error.code ? { code: error.code } : {}));
      else job.resolve();
    });
    const fail = (error: Error): void => {
      this.dead = true;
      for (const job of this.#jobs.values()) job.reject(error);
      this.#jobs.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`the tree-remover thread exited (code ${code})`)));
  }

  remove(paths: readonly string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#jobs.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, paths } satisfies ToTreeRemover);
    });
  }
}

let shared: TreeRemover | undefined;

/**
 * Removes each path and everything under it, in order, as `rm -rf` does: a path that
 * is not there is fine. Rejects with the first error (its `code` kept, e.g. EBUSY).
 */
export function removeTrees(paths: readonly string[]): Promise<void> {
  if (!shared || shared.dead) shared = new TreeRemover();
  return shared.remove(paths);
}
