import { InvalidArgumentError } from '../../../domain/errors.js';
import { parseDuration } from '../../config.js';

const DURATION = /^\d+(?:\.\d+)?(?:ms|s|m|h|d)(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))*$/;

/**
 * A point in time given on the command line: RFC 3339 (`2026-11-28T10:00:00Z`), or a
 * duration meaning that long ago (`90s`, `10m`, `1h30m`). Returns ISO 8601 UTC.
 */
export function parseTimeArg(value: string, flag: string, now = Date.now()): string {
  const text = value.trim();
  if (DURATION.test(text)) return new Date(now - parseDuration(text)).toISOString();
  const ms = Date.parse(text);
  if (Number.isNaN(ms))
    throw new InvalidArgumentError(flag, `"${value}" is not a time (RFC 3339, or a duration ago such as 10m)`);
  return new Date(ms).toISOString();
}

/** A seq given on the command line: a whole number, 1 or more. */
export function parseSeqArg(value: string, flag: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(flag, `"${value}" is not a seq (a whole number, 1 or more)`);
  }
  return Number(value);
}

/** `--until`: a bare number is a seq, anything else a time. */
export function parseUntilArg(value: string, now = Date.now()): { toSeq: number } | { until: string } {
  if (/^\d+$/.test(value.trim())) return { toSeq: parseSeqArg(value, '--until') };
  return { until: parseTimeArg(value, '--until', now) };
}

/** `12.3ms`, `1.234s`, `2m03s`, `1h02m`: short, and precise where it matters. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Number(ms.toFixed(1))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(3)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}
