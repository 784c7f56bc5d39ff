import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { mountsUnder } from './containerd.js';

/** A small tmpfs mounted at `dir` (created if missing), with a filler file to run it out of space. */
export interface SmallDisk {
  dir: string;
  /** Writes a filler file until the filesystem refuses (ENOSPC); returns its size in bytes. */
  fill(): number;
  /** Removes the filler: the space it took is free again. */
  free(): void;
  /** Unmounts (lazily, so a process still holding a file cannot stop it). Safe to call twice. */
  unmount(): void;
}

export function mountSmallDisk(dir: string, sizeBytes: number): SmallDisk {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  const filler = join(dir, 'filler');
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      let written = 0;
      try {
        // Large chunks first, then single pages for the last bit of space.
        for (const chunk of [Buffer.alloc(256 * 1024, 1), Buffer.alloc(4096, 1), Buffer.alloc(512, 1)]) {
          try {
            for (;;) written += writeSync(fd, chunk);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          }
        }
      } finally {
        closeSync(fd);
      }
      return written;
    },
    free: () => rmSync(filler, { force: true }),
    unmount() {
      if (mountsUnder(dir).includes(dir)) execFileSync('umount', ['-l', dir]);
    },
  };
}
