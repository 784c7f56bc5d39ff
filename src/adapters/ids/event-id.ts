import { randomFillSync } from 'node:crypto';

/*
 * Event ids are ULIDs: 48 bits of milliseconds and 80 random bits, in Crockford
 * base-32, so they sort by time. Within one millisecond the random part is incremented,
 * so ids from this process are strictly increasing. Randomness comes from a pool filled
 * a few KiB at a time: one getrandom call per id would cost more than the synced append.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_CHARS = 16;
const POOL_BYTES = 4096;

const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;
let lastMs = -1;
const lastRandom = new Uint8Array(RANDOM_CHARS);

function refillRandom(): void {
  if (poolOffset + RANDOM_CHARS > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  for (let i = 0; i < RANDOM_CHARS; i++) lastRandom[i] = pool[poolOffset + i]! & 31;
  poolOffset += RANDOM_CHARS;
}

/** Adds one to the base-32 random part; overflow within a millisecond borrows the next one. */
function incrementRandom(): boolean {
  for (let i = RANDOM_CHARS - 1; i >= 0; i--) {
    if (lastRandom[i]! < 31) {
      lastRandom[i]!++;
      return true;
    }
    lastRandom[i] = 0;
  }
  return false;
}

function encodeTime(ms: number): string {
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32]! + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

/** A new event id, strictly greater than every id this process made before it. */
export function newEventId(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    refillRandom();
  } else if (!incrementRandom()) {
    lastMs += 1;
    refillRandom();
  }
  let random = '';
  for (let i = 0; i < RANDOM_CHARS; i++) random += ALPHABET[lastRandom[i]!];
  return encodeTime(lastMs) + random;
}
