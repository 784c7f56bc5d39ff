import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Row {
  metric: string;
  value: number;
  unit: string;
  target?: string;
}

/** The project's bench/results folder (this file is compiled to dist/bench/). */
export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

/** Prints the rows as an aligned table and writes `{metric: value}` to bench/results/<suite>.json. */
export function report(suite: string, rows: Row[], extra: Record<string, unknown> = {}): void {
  const cells = rows.map((r) => [r.metric, formatNumber(r.value), r.unit, r.target ?? '']);
  const header = ['metric', 'value', 'unit', 'target'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === 1 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log(`\n${suite}`);
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const c of cells) console.log(line(c));
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = { ...Object.fromEntries(rows.map((r) => [r.metric, round(r.value)])), ...extra };
  writeFileSync(join(RESULTS_DIR, `${suite}.json`), JSON.stringify(json, null, 2) + '\n');
}

function round(value: number): number {
  return value >= 100 ? Math.round(value) : Math.round(value * 1000) / 1000;
}

function formatNumber(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : String(round(value));
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
