import { status as Status } from '@grpc/grpc-js';
import { RuntimeUnavailableError } from '../../domain/errors.js';
import { ContainerdCallError, hasStatus } from './containerd-calls.js';

/**
 * `promise`, with a containerd that does not answer (gRPC UNAVAILABLE) turned into
 * RuntimeUnavailableError; every other failure stays a ContainerdCallError.
 */
export async function unavailableAsRuntimeError<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ContainerdCallError && error.code === Status.UNAVAILABLE) {
      throw new RuntimeUnavailableError(`${error.method}: ${error.details}`, { cause: error });
    }
    throw error;
  }
}

/** `promise`, with NOT_FOUND meaning there was nothing to do (removals are idempotent). */
export async function ignoreNotFound(promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (!hasStatus(error, Status.NOT_FOUND)) throw error;
  }
}
