import { Metadata, status as Status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import {
  AmbiguousIdError,
  ConcurrencyError,
  CorruptRecordError,
  CriLedgerError,
  ExecTimeoutError,
  FailedPreconditionError,
  InvalidArgumentError,
  LedgerClosedError,
  NotFoundError,
  NameConflictError,
  NotImplementedError,
  OperationTimeoutError,
  RuntimeUnavailableError,
  SubscriberTooSlowError,
  UnknownEventError,
} from '../../domain/errors.js';
import { ContainerNotRunningError } from '../containerd/containerd-exec.js';
import { BlobMismatchError, LayerDiffIdMismatchError, NoMatchingManifestError } from '../containerd/containerd-pull.js';
import { LedgerDiskFullError, LedgerStorageError } from '../eventlog/storage-errors.js';
import { ImageArchiveError } from '../images/archive-source.js';
import {
  ContentVerificationError,
  HostsConfigError,
  PlatformNotFoundError,
  RegistryNotFoundError,
  RegistryPermissionDeniedError,
  RegistryUnauthenticatedError,
  RegistryUnavailableError,
} from '../registry/registry-errors.js';

/*
 * The one place a domain error becomes a gRPC status (and, for clients of our own
 * services, a status becomes an error again). The CRI server will extend this table;
 * handlers never pick codes themselves.
 */

/** The server is closing: live streams end with this so clients know to reconnect. */
export class ServiceShuttingDownError extends CriLedgerError {
  constructor() {
    super('the cri-ledger service is shutting down');
  }
}

/** The status code for an error thrown by a handler. */
export function grpcCodeFor(error: unknown): Status {
  if (error instanceof InvalidArgumentError) return Status.INVALID_ARGUMENT;
  if (error instanceof AmbiguousIdError) return Status.INVALID_ARGUMENT;
  if (error instanceof NotFoundError) return Status.NOT_FOUND;
  if (error instanceof FailedPreconditionError) return Status.FAILED_PRECONDITION;
  if (
    error instanceof RegistryNotFoundError ||
    error instanceof PlatformNotFoundError ||
    error instanceof NoMatchingManifestError
  )
    return Status.NOT_FOUND;
  if (error instanceof RegistryUnauthenticatedError) return Status.UNAUTHENTICATED;
  if (error instanceof RegistryPermissionDeniedError) return Status.PERMISSION_DENIED;
  if (error instanceof RegistryUnavailableError) return Status.UNAVAILABLE;
  if (
    error instanceof ContentVerificationError ||
    error instanceof BlobMismatchError ||
    error instanceof LayerDiffIdMismatchError
  )
    return Status.DATA_LOSS;
  if (error instanceof HostsConfigError) return Status.FAILED_PRECONDITION;
  if (error instanceof ImageArchiveError) return Status.INVALID_ARGUMENT;
  if (error instanceof OperationTimeoutError || error instanceof ExecTimeoutError) return Status.DEADLINE_EXCEEDED;
  if (error instanceof ContainerNotRunningError) return Status.FAILED_PRECONDITION;
  if (error instanceof NameConflictError) return Status.ALREADY_EXISTS;
  if (error instanceof NotImplementedError) return Status.UNIMPLEMENTED;
  if (error instanceof ConcurrencyError) return Status.ABORTED;
  if (error instanceof LedgerClosedError || error instanceof ServiceShuttingDownError) return Status.UNAVAILABLE;
  if (error instanceof RuntimeUnavailableError) return Status.UNAVAILABLE;
  // The log could not take the events (nothing of them was stored): a full disk is the
  // operator's to fix, kubelet's retry succeeds once space is freed.
  if (error instanceof LedgerDiskFullError) return Status.RESOURCE_EXHAUSTED;
  if (error instanceof SubscriberTooSlowError) return Status.RESOURCE_EXHAUSTED;
  if (error instanceof LedgerStorageError) return Status.UNAVAILABLE;
  // A record this build cannot read: the data is there but unusable, not a server bug.
  if (error instanceof CorruptRecordError || error instanceof UnknownEventError) return Status.DATA_LOSS;
  return Status.INTERNAL;
}

/**
 * The ServiceError to hand to grpc-js for `error`. Known errors keep their message (an
 * InvalidArgumentError's starts with the field it names); an unexpected one is reported
 * as INTERNAL with its message only, never its stack.
 */
export function toServiceError(error: unknown): ServiceError {
  const code = grpcCodeFor(error);
  const message = error instanceof Error ? error.message : String(error);
  const details =
    code === Status.INTERNAL && !(error instanceof CriLedgerError) ? `internal error: ${message}` : message;
  const out = new Error(details) as ServiceError;
  out.code = code;
  out.details = details;
  out.metadata = new Metadata();
  return out;
}

/** A status a client received, as an error the CLI prints in one line. */
export class RemoteCallError extends CriLedgerError {
  constructor(
    readonly code: Status,
    readonly rpc: string,
    readonly details: string,
  ) {
    super(`${rpc}: ${Status[code] ?? code}: ${details}`);
  }
}

/** Converts an error from a grpc-js client call back into a domain-shaped error. */
export function fromServiceError(error: unknown, rpc: string): Error {
  const e = error as Partial<StatusObject> | undefined;
  if (e && typeof e.code === 'number') {
    const details = e.details || (error instanceof Error ? error.message : '');
    if (e.code === Status.INVALID_ARGUMENT) {
      // The server's message starts with the field it names: keep it a field error.
      const colon = details.indexOf(': ');
      return colon > 0
        ? new InvalidArgumentError(details.slice(0, colon), details.slice(colon + 2))
        : new InvalidArgumentError(rpc, details);
    }
    return new RemoteCallError(e.code, rpc, details);
  }
  return error instanceof Error ? error : new Error(String(error));
}
