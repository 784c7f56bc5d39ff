import type { Command } from 'commander';
import { registerEvents } from './events.js';
import { registerExplain } from './explain.js';
import { registerImages } from './images.js';
import { registerReplay } from './replay.js';
import { registerServe } from './serve.js';
import { registerStatus } from './status.js';
import { registerReport } from './report.js';
import { registerTimeline } from './timeline.js';
import { registerVerify } from './verify.js';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerServe(program);
  registerStatus(program);
  registerEvents(program);
  registerTimeline(program);
  registerReport(program);
  registerExplain(program);
  registerReplay(program);
  registerVerify(program);
  registerImages(program);
}
