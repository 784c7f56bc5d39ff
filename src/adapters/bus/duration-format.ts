// Kept apart from nats-stream-config.ts so the CLI can format durations without loading the NATS client.

/** `600000` -> `10m`, `5400000` -> `1h30m`, `0` -> `0`: the way the nats CLI shows durations. */
export function formatDurationMs(ms: number): string {
  if (ms === 0) return '0';
  const units: Array<[string, number]> = [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ];
  let rest = ms;
  let out = '';
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  if (rest > 0) out += `${Number(rest.toFixed(3))}ms`;
  return out;
}
