import { InvalidArgumentError } from '../../domain/errors.js';

/*
 * CRI int64 fields arrive as decimal strings (see cri-definition.ts). The spec is JSON, so
 * a value past 2^53 could not be written exactly: refuse it instead of rounding it.
 */

/** The int64 string as a safe integer; '' (unset) is 0. */
export function int64Field(value: string | number | undefined | null, field: string): number {
  if (value === undefined || value === null || value === '') return 0;
  const text = String(value);
  if (!/^-?\d+$/.test(text)) throw new InvalidArgumentError(field, `"${text}" is not an integer`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(field, `${text} is out of range`);
  return n;
}

/** A uid or gid: 0 .. 2^32-2 (2^32-1 is the kernel's "no id"). */
export function idField(value: string | number, field: string): number {
  const n = int64Field(value, field);
  if (n < 0 || n > MAX_ID) throw new InvalidArgumentError(field, `${n} is not a valid id`);
  return n;
}

/**
 * The largest uid or gid accepted: 2^31-1. Larger ones overflow a signed 32-bit int in
 * parts of the stack and have run containers as root (CVE-2024-40635).
 */
export const MAX_ID = 0x7fffffff;
