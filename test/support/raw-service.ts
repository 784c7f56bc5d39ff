import type { MethodDefinition } from '@grpc/grpc-js';

const raw = (b: Buffer): Buffer => b;

/** A unary gRPC method whose messages are bytes as they are: tests of the socket below the CRI. */
export function rawUnaryMethod(path: string): MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  };
}
