// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface CheckpointContainerRequest {
  'containerId'?: (string);
  /**
   * Path of the checkpoint archive to write.
   */
  'location'?: (string);
  /**
   * Seconds; 0 selects the runtime's default.
   */
  'timeout'?: (number | string | Long);
}

export interface CheckpointContainerRequest__Output {
  'containerId': (string);
  /**
   * Path of the checkpoint archive to write.
   */
  'location': (string);
  /**
   * Seconds; 0 selects the runtime's default.
   */
  'timeout': (string);
}
