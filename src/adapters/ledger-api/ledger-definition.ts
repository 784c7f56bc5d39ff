import type { GrpcObject, ServiceClientConstructor } from '@grpc/grpc-js';
import { loadProto } from '../grpc/proto.js';

/** The proto file of the ledger API, relative to proto/. */
export const LEDGER_PROTO = 'cri_ledger/v1/ledger.proto';

/** The generated client class of `cri_ledger.v1.Ledger`; its `.service` is the server-side definition. */
export function ledgerServiceClass(): ServiceClientConstructor {
  const v1 = (loadProto(LEDGER_PROTO).cri_ledger as GrpcObject).v1 as GrpcObject;
  return v1.Ledger as ServiceClientConstructor;
}

/** The proto file of the image administration API, relative to proto/. */
export const IMAGES_PROTO = 'cri_ledger/v1/images.proto';

/** The generated client class of `cri_ledger.v1.Images`. */
export function imagesServiceClass(): ServiceClientConstructor {
  const v1 = (loadProto(IMAGES_PROTO).cri_ledger as GrpcObject).v1 as GrpcObject;
  return v1.Images as ServiceClientConstructor;
}
