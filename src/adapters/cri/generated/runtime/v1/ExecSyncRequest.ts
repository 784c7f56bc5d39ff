// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface ExecSyncRequest {
  'containerId'?: (string);
  'cmd'?: (string)[];
  /**
   * Seconds; 0: no limit.
   */
  'timeout'?: (number | string | Long);
}

export interface ExecSyncRequest__Output {
  'containerId': (string);
  'cmd': (string)[];
  /**
   * Seconds; 0: no limit.
   */
  'timeout': (string);
}
