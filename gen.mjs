import { rm } from 'node:fs/promises';
import { LevelDbEventLog } from './dist/src/adapters/eventlog/leveldb-event-log.js';
import { generateScenario } from './dist/test/support/scenario.js';
const dir='/tmp/benchlog1m'; await rm(dir,{recursive:true,force:true});
const log = await LevelDbEventLog.open({ dir, node: 'bench' });
for (let seed=1; log.head() < 1_000_000; seed++) await Promise.all(generateScenario({ pods: 400, seed }).map((a) => log.append(`${a.stream}-${seed}`, a.expected, a.events)));
console.log(log.head()); await log.close();
