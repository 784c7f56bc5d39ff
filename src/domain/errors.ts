/**
 * Domain errors. Each sets `name`, carries an optional `cause`, and is mapped to a gRPC
 * status in exactly one place (src/adapters/cri/status.ts once the CRI server exists;
 * the ledger API maps them in src/adapters/ledger-api).
 */
export class CriLedgerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is well-formed but the object is in the wrong state for it (gRPC FAILED_PRECONDITION). */
export class FailedPreconditionError extends CriLedgerError {}

/** An event subscriber fell further behind the log than the service lets it (gRPC RESOURCE_EXHAUSTED). */
export class SubscriberTooSlowError extends CriLedgerError {}

/** An operation ran past its own timeout (ExecSync's): DEADLINE_EXCEEDED, which kubelet reads as a probe timeout. */
export class OperationTimeoutError extends CriLedgerError {}

/** A request or config value is malformed; `field` names it. */
export class InvalidArgumentError extends CriLedgerError {
  constructor(
    readonly field: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${detail}`, options);
  }
}

/** An append expected a stream version that is not the stream's current one. */
export class ConcurrencyError extends CriLedgerError {
  constructor(
    readonly stream: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(`stream ${stream} is at version ${actualVersion}, the append expected ${expectedVersion}`);
  }
}

/** An event in the log has a type or schema version this build does not know. */
export class UnknownEventError extends CriLedgerError {
  constructor(
    readonly type: string,
    readonly v: number,
    readonly seq?: number,
  ) {
    super(
      `unknown event ${type} v${v}${seq === undefined ? '' : ` at seq ${seq}`}: ` +
        'this cri-ledger build cannot read it (is the log from a newer version?)',
    );
  }
}

/** A stored record cannot be decoded or fails its schema. Startup stops on it. */
export class CorruptRecordError extends CriLedgerError {
  constructor(
    readonly seq: number | undefined,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`corrupt event record${seq === undefined ? '' : ` at seq ${seq}`}: ${detail}`, options);
  }
}

/** A seq has no record: the log has a hole from `seq` up to `nextSeq` (exclusive). */
export class MissingRecordError extends CorruptRecordError {
  constructor(
    seq: number,
    readonly nextSeq: number,
  ) {
    super(seq, `record missing (next stored seq is ${nextSeq})`);
  }
}

/** The log directory is held by another process (LevelDB LOCK). */
export class LedgerLockedError extends CriLedgerError {
  constructor(
    readonly dir: string,
    options?: { cause?: unknown },
  ) {
    super(
      `the ledger at ${dir} is held by another cri-ledger process; ` +
        'stop it, or read through its socket (the default) instead of --db',
      options,
    );
  }
}

/** An id prefix matches more than one id. */
export class AmbiguousIdError extends CriLedgerError {
  constructor(
    readonly prefix: string,
    readonly matches: string[],
  ) {
    super(`id prefix "${prefix}" matches ${matches.length} ids: ${matches.slice(0, 5).join(', ')}`);
  }
}

/** Nothing is known by that id or name. */
export class NotFoundError extends CriLedgerError {
  constructor(
    readonly what: string,
    readonly key: string,
  ) {
    super(`${what} "${key}" not found`);
  }
}

/** A name is held by another container or sandbox; `holderId` says which. */
export class NameConflictError extends CriLedgerError {
  constructor(
    readonly heldName: string,
    readonly holderId: string,
  ) {
    super(`the name "${heldName}" is reserved for ${holderId}`);
  }
}

/** The container runtime (containerd) cannot be reached; calls that need it fail until it is back. */
export class RuntimeUnavailableError extends CriLedgerError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`containerd is unavailable: ${detail}`, options);
  }
}

/** An RPC this build does not implement yet; `rpc` is its full method name. */
export class NotImplementedError extends CriLedgerError {
  constructor(readonly rpc: string) {
    super(`${rpc} is not implemented by cri-ledger yet`);
  }
}

/** The log was closed while an operation was pending. */
export class LedgerClosedError extends CriLedgerError {
  constructor() {
    super('the ledger is closed');
  }
}

/**
 * An ExecSync command outlived its timeout and was SIGKILLed and deleted (DEADLINE_EXCEEDED).
 * The runtime adapter throws it; ExecSync records the timeout with `execId` and answers it.
 */
export class ExecTimeoutError extends CriLedgerError {
  constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly cmd: readonly string[],
    readonly timeoutMs: number,
  ) {
    super(
      `exec ${JSON.stringify(cmd)} (${execId}) in container ${containerId} did not finish within ${timeoutMs} ms and was killed`,
    );
  }
}

/** A stored snapshot of the projections whose bytes are not what was written (checksum, truncation). */
export class SnapshotCorruptError extends CriLedgerError {
  constructor(
    readonly location: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`snapshot ${location}: ${detail}`, options);
  }
}
