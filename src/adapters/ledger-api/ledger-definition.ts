import type { GrpcObject, ServiceClientConstructor } from '@grpc/grpc-js';
import { loadProto } from '../grpc/proto.js';
import { IMAGES_PROTO_SET, LEDGER_PROTO_SET } from '../grpc/proto-sets.js';

/** The generated client class of `cri_ledger.v1.Ledger`; its `.service` is the server-side definition. */
export function ledgerServiceClass(): ServiceClientConstructor {
  const v1 = (loadProto(LEDGER_PROTO_SET).cri_ledger as GrpcObject).v1 as GrpcObject;
  return v1.Ledger as ServiceClientConstructor;
}

/** The generated client class of `cri_ledger.v1.Images`. */
export function imagesServiceClass(): ServiceClientConstructor {
  const v1 = (loadProto(IMAGES_PROTO_SET).cri_ledger as GrpcObject).v1 as GrpcObject;
  return v1.Images as ServiceClientConstructor;
}
