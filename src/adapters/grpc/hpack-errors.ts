import { CriLedgerError } from '../../domain/errors.js';

/**
 * A header block that HPACK cannot decode (RFC 7541's decoding error). HTTP/2 makes it a
 * connection error of type COMPRESSION_ERROR: the connection ends, the service does not.
 */
export class HpackError extends CriLedgerError {
  constructor(detail: string) {
    super(`HPACK: ${detail}`);
  }
}
