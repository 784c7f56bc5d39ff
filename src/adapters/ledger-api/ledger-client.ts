import {
  credentials,
  Metadata,
  status as Status,
  type Client,
  type ClientReadableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { fromServiceError } from '../grpc/status.js';
import { MAX_MESSAGE_BYTES } from '../grpc/socket-server.js';
import type { EventFilter } from './event-filter.js';
import { ledgerServiceClass } from './ledger-definition.js';
import {
  filterToWire,
  type EventRecord,
  type WirePrunedRequest,
  type WirePrunedResponse,
  type WireReadRequest,
  type WireStatus,
} from './wire.js';

/** How long a Status call may take before the client gives up. */
export const DEFAULT_STATUS_DEADLINE_MS = 10_000;

type LedgerStub = Client & {
  ReadEvents(request: WireReadRequest, metadata: Metadata): ClientReadableStream<EventRecord>;
  Follow(request: WireReadRequest, metadata: Metadata): ClientReadableStream<EventRecord>;
  Status(
    request: object,
    metadata: Metadata,
    options: { deadline: number },
    callback: (error: ServiceError | null, response?: WireStatus) => void,
  ): void;
  Pruned(
    request: WirePrunedRequest,
    metadata: Metadata,
    options: { deadline: number },
    callback: (error: ServiceError | null, response?: WirePrunedResponse) => void,
  ): void;
};

/** A client of `cri_ledger.v1.Ledger` on a service's unix socket. */
export class LedgerClient {
  private constructor(private readonly stub: LedgerStub) {}

  /** Creates the client; the connection is made by the first call. */
  static connect(socketPath: string): LedgerClient {
    const Ctor = ledgerServiceClass();
    const stub = new Ctor(`unix://${socketPath}`, credentials.createInsecure(), {
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    }) as unknown as LedgerStub;
    return new LedgerClient(stub);
  }

  /** The stored records the filter selects, up to the head as it was when the call began. */
  readEvents(filter: EventFilter = {}): AsyncIterable<EventRecord> {
    return iterate(() => this.stub.ReadEvents(filterToWire(filter), new Metadata()), 'ReadEvents');
  }

  /** Catch-up then live, until `signal` aborts or the iteration is left. */
  follow(filter: EventFilter = {}, signal?: AbortSignal): AsyncIterable<EventRecord> {
    return iterate(() => this.stub.Follow(filterToWire(filter), new Metadata()), 'Follow', signal);
  }

  /** What retention removed; undefined from a service that predates the Pruned RPC. */
  pruned(request: WirePrunedRequest, deadlineMs = DEFAULT_STATUS_DEADLINE_MS): Promise<WirePrunedResponse | undefined> {
    return new Promise((resolve, reject) => {
      this.stub.Pruned(request, new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) => {
        if (error?.code === Status.UNIMPLEMENTED) resolve(undefined);
        else if (error) reject(fromServiceError(error, 'Pruned'));
        else resolve(response!);
      });
    });
  }

  status(deadlineMs = DEFAULT_STATUS_DEADLINE_MS): Promise<WireStatus> {
    return new Promise((resolve, reject) => {
      this.stub.Status({}, new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
        error ? reject(fromServiceError(error, 'Status')) : resolve(response!),
      );
    });
  }

  close(): void {
    this.stub.close();
  }
}

/**
 * Iterates a server stream. Leaving the loop early (or aborting) cancels the call on the
 * server, so a `events | head` does not leave a reader running in the service.
 */
async function* iterate(
  open: () => ClientReadableStream<EventRecord>,
  rpc: string,
  signal?: AbortSignal,
): AsyncIterable<EventRecord> {
  const call = open();
  let finished = false;
  const cancel = (): void => call.cancel();
  signal?.addEventListener('abort', cancel);
  try {
    for await (const record of call as AsyncIterable<EventRecord>) yield record;
    finished = true;
  } catch (error) {
    // Our own cancel is how an aborted follow ends, not a failure.
    if (signal?.aborted && (error as ServiceError).code === Status.CANCELLED) return;
    finished = true;
    throw fromServiceError(error, rpc);
  } finally {
    signal?.removeEventListener('abort', cancel);
    if (!finished) {
      call.on('error', () => undefined);
      call.cancel();
    }
  }
}
