import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

// Compiled to dist/test/unit; the sources are three levels up.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PURE = ['src/domain', 'src/commands', 'src/projections'];
const FORBIDDEN =
  /from\s+['"](node:[^'"]+|fs|path|os|net|child_process|level|classic-level|nats|@grpc\/[^'"]+|pino)['"]/;
const OUTWARD = /from\s+['"]\.\.\/(adapters|cli)\//;

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

it('keeps domain, commands and projections free of I/O imports and of adapters', () => {
  const files = PURE.flatMap(sources);
  assert.ok(files.length >= 10, `expected the pure layers' sources, found ${files.length}`);
  const offenders = files.flatMap((file) =>
    readFileSync(join(ROOT, file), 'utf8')
      .split('\n')
      .filter((line) => FORBIDDEN.test(line) || OUTWARD.test(line))
      .map((line) => `${file}: ${line.trim()}`),
  );
  assert.deepEqual(offenders, []);
});

it('keeps the CRI edge off the containerd adapter: it reaches the runtime through ports', () => {
  const files = sources('src/adapters/cri').filter((f) => !f.includes('/generated/'));
  assert.ok(files.length >= 5, `expected the CRI edge's sources, found ${files.length}`);
  const offenders = files.flatMap((file) =>
    readFileSync(join(ROOT, file), 'utf8')
      .split('\n')
      .filter((line) => /from\s+['"]\.\.\/containerd\//.test(line))
      .map((line) => `${file}: ${line.trim()}`),
  );
  assert.deepEqual(offenders, []);
});
