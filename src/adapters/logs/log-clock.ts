/** Nanoseconds since the Unix epoch, UTC. */
export type EpochNsClock = () => bigint;

/** How far the monotonic reading may drift from the wall clock before it is re-anchored. */
export const DEFAULT_CLOCK_DRIFT_NS = 2_000_000n;

/**
 * A wall clock with nanosecond digits. `Date.now()` has only milliseconds, so the digits
 * below come from the monotonic clock, anchored to the wall clock when created and again
 * whenever the two drift apart by more than DEFAULT_CLOCK_DRIFT_NS (an NTP step, a
 * suspended machine): a log time is never more than a few milliseconds off the wall clock.
 */
export function systemClockNs(): EpochNsClock {
  let anchorWall = BigInt(Date.now()) * 1_000_000n;
  let anchorMono = process.hrtime.bigint();
  return () => {
    const mono = process.hrtime.bigint();
    const derived = anchorWall + (mono - anchorMono);
    const wall = BigInt(Date.now()) * 1_000_000n;
    const drift = derived > wall ? derived - wall : wall - derived;
    if (drift <= DEFAULT_CLOCK_DRIFT_NS) return derived;
    anchorWall = wall;
    anchorMono = mono;
    return wall;
  };
}
