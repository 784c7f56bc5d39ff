import { pino, type Logger } from 'pino';

/** The service's root logger: JSON lines on stderr, so stdout stays free for CLI output. */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...base }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

export type { Logger };
