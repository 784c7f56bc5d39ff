import { CriLedgerError } from '../../domain/errors.js';

/*
 * What a pull from a registry can fail with. Each message names the reference, the
 * registry and every URL tried with its outcome, so an operator can tell a typo from a
 * mirror that is down. The gRPC code each maps to is on its doc comment.
 */

/** One request to one host and how it ended: `http://127.0.0.1:5000/v2/x/manifests/1 -> 404 MANIFEST_UNKNOWN`. */
export interface RegistryAttempt {
  url: string;
  outcome: string;
}

function tried(attempts: readonly RegistryAttempt[]): string {
  if (attempts.length === 0) return 'no host has the capability for this request';
  return `tried ${attempts.map((a) => `${a.url} (${a.outcome})`).join(', ')}`;
}

/** The common shape: which reference, on which registry, what was tried. */
export abstract class RegistryError extends CriLedgerError {
  constructor(
    readonly reference: string,
    readonly registry: string,
    readonly attempts: readonly RegistryAttempt[],
    summary: string,
    options?: { cause?: unknown },
  ) {
    super(`${summary}: ${tried(attempts)}`, options);
  }
}

/** The repository, tag, manifest or blob does not exist on the registry (gRPC NOT_FOUND). */
export class RegistryNotFoundError extends RegistryError {
  constructor(
    reference: string,
    registry: string,
    readonly what: string,
    attempts: readonly RegistryAttempt[],
  ) {
    super(reference, registry, attempts, `${reference} not found on registry ${registry} (${what})`);
  }
}

/** The registry refused the credentials, or none were given where some are needed (gRPC UNAUTHENTICATED). */
export class RegistryUnauthenticatedError extends RegistryError {
  constructor(reference: string, registry: string, attempts: readonly RegistryAttempt[]) {
    super(reference, registry, attempts, `registry ${registry} did not accept the credentials for ${reference}`);
  }
}

/** The credentials are valid but may not pull this repository (gRPC PERMISSION_DENIED). */
export class RegistryPermissionDeniedError extends RegistryError {
  constructor(reference: string, registry: string, attempts: readonly RegistryAttempt[]) {
    super(reference, registry, attempts, `registry ${registry} denied access to ${reference}`);
  }
}

/** No host could be reached or answered usefully: refused, DNS, TLS, timeout, 5xx, 429 (gRPC UNAVAILABLE). */
export class RegistryUnavailableError extends RegistryError {
  constructor(
    reference: string,
    registry: string,
    attempts: readonly RegistryAttempt[],
    options?: { cause?: unknown },
  ) {
    super(reference, registry, attempts, `registry ${registry} is unavailable for ${reference}`, options);
  }
}

/** The registry answered something this client cannot use: an unexpected status, a schema 1 or malformed manifest (gRPC UNKNOWN). */
export class RegistryProtocolError extends RegistryError {
  constructor(
    reference: string,
    registry: string,
    detail: string,
    attempts: readonly RegistryAttempt[] = [],
    options?: { cause?: unknown },
  ) {
    super(
      reference,
      registry,
      attempts,
      `registry ${registry} gave an unusable answer for ${reference}: ${detail}`,
      options,
    );
  }
}

/** The index lists no manifest for the wanted platform (gRPC NOT_FOUND). */
export class PlatformNotFoundError extends CriLedgerError {
  constructor(
    readonly reference: string,
    readonly platform: string,
    readonly available: readonly string[],
  ) {
    super(`${reference} has no manifest for ${platform} (it has: ${available.join(', ') || 'none'})`);
  }
}

/** Content does not match its descriptor's digest or size (gRPC DATA_LOSS). */
export class ContentVerificationError extends CriLedgerError {
  constructor(
    readonly reference: string,
    readonly digest: string,
    detail: string,
  ) {
    super(`content ${digest} of ${reference} failed verification: ${detail}`);
  }
}

/** A hosts.toml cannot be read or says something unsupported; the message names file and line (gRPC FAILED_PRECONDITION: the node is misconfigured, not the request). */
export class HostsConfigError extends CriLedgerError {
  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`registry hosts config ${file}: ${detail}`, options);
  }
}
