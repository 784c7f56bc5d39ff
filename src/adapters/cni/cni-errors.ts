import { CriLedgerError } from '../../domain/errors.js';

/** The CNI operations a runtime asks of a plugin. */
export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

/** A CNI plugin failed: not found, exited non-zero, timed out, or printed no usable result. */
export class CniError extends CriLedgerError {
  constructor(
    /** The plugin's `type` (its binary name). */
    readonly plugin: string,
    readonly command: CniCommand,
    /** The plugin's own message (its JSON error `msg`, or what went wrong running it). */
    readonly detail: string,
    /** The CNI error code the plugin reported, when it reported one. */
    readonly code?: number,
    options?: { cause?: unknown },
  ) {
    super(`CNI plugin ${plugin} ${command} failed: ${detail}${code === undefined ? '' : ` (code ${code})`}`, options);
  }
}

/** A network config file cannot be used (unreadable, not JSON, missing fields). */
export class CniConfigError extends CriLedgerError {
  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`CNI config ${file}: ${detail}`, options);
  }
}

/** No usable network config exists in the conf dir. */
export class NoNetworkConfigError extends CriLedgerError {
  constructor(readonly confDir: string) {
    super(`no network config found in ${confDir}`);
  }
}
