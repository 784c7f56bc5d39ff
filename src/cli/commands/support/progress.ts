import { SingleBar, Presets } from 'cli-progress';

/** Below this many events a bar would only flicker. */
export const MIN_PROGRESS_TOTAL = 5_000;

export interface Progress {
  /** Marks `done` events processed so far (absolute, not a delta). */
  update(done: number): void;
  stop(): void;
}

const NONE: Progress = { update: () => undefined, stop: () => undefined };

/**
 * A progress bar on stderr for long reads (replay, verify, status --db), only when
 * stderr is a terminal: piped or captured output never gets control sequences.
 */
export function startProgress(label: string, total: number): Progress {
  if (!process.stderr.isTTY || total < MIN_PROGRESS_TOTAL) return NONE;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% {value}/{total} events, eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      fps: 10,
    },
    Presets.shades_classic,
  );
  bar.start(total, 0);
  let last = 0;
  return {
    update(done) {
      // cli-progress redraws on its own timer; touching it per event would cost more than the read.
      if (done - last >= 1000 || done >= total) {
        last = done;
        bar.update(Math.min(done, total));
      }
    },
    stop() {
      bar.stop();
    },
  };
}
