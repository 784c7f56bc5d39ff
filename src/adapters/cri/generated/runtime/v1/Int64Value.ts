// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Wrapper so that 0 (root) can be told apart from unset.
 */
export interface Int64Value {
  'value'?: (number | string | Long);
}

/**
 * Wrapper so that 0 (root) can be told apart from unset.
 */
export interface Int64Value__Output {
  'value': (string);
}
