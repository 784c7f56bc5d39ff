import { runCriBench } from './cri.js';
import { runFleetBench } from './fleet.js';
import { runCriGoBench } from './cri-go.js';
import { runImagesBench } from './images.js';
import { runKubeletLoadBench } from './kubelet-load.js';
import { runLedgerBench } from './ledger.js';
import { runOverheadBench } from './overhead.js';
import { runRestartBench } from './restart.js';
import { runRetentionBench } from './retention.js';
import { runStreamingBench } from './streaming.js';

/** `npm run bench -- <suite>`: each suite prints a table and writes bench/results/<suite>.json. */
const SUITES: Record<string, (args: string[]) => Promise<void>> = {
  ledger: runLedgerBench,
  cri: runCriBench,
  'cri-go': runCriGoBench,
  images: runImagesBench,
  restart: runRestartBench,
  retention: runRetentionBench,
  overhead: runOverheadBench,
  streaming: runStreamingBench,
  fleet: runFleetBench,
  'kubelet-load': runKubeletLoadBench,
};

const [suite, ...args] = process.argv.slice(2);
const run = suite === undefined ? undefined : SUITES[suite];
if (!run) {
  console.error(`usage: npm run bench -- <suite> [options]\nsuites: ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
await run(args);
