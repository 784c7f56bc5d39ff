// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface PsiData {
  /**
   * Total stall time, nanoseconds.
   */
  'Total'?: (number | string | Long);
  /**
   * Percent of time stalled over the last 10, 60 and 300 seconds.
   */
  'Avg10'?: (number | string);
  'Avg60'?: (number | string);
  'Avg300'?: (number | string);
}

export interface PsiData__Output {
  /**
   * Total stall time, nanoseconds.
   */
  'Total': (string);
  /**
   * Percent of time stalled over the last 10, 60 and 300 seconds.
   */
  'Avg10': (number);
  'Avg60': (number);
  'Avg300': (number);
}
