#!/usr/bin/env node
// The compiled CLI lives in dist/; `npm run build` (or the README's commands) makes it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('cri-ledger is not built yet: run `npm run build` in the project directory');
  process.exit(1);
}
await import(main);
