// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface StopContainerRequest {
  'containerId'?: (string);
  /**
   * Grace period in seconds; 0 kills at once.
   */
  'timeout'?: (number | string | Long);
}

export interface StopContainerRequest__Output {
  'containerId': (string);
  /**
   * Grace period in seconds; 0 kills at once.
   */
  'timeout': (string);
}
