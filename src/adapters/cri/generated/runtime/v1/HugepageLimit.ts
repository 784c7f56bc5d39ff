// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

export interface HugepageLimit {
  /**
   * "2MB", "1GB": the <size> in hugetlb.<size>.limit_in_bytes, base 1024.
   */
  'pageSize'?: (string);
  'limit'?: (number | string | Long);
}

export interface HugepageLimit__Output {
  /**
   * "2MB", "1GB": the <size> in hugetlb.<size>.limit_in_bytes, base 1024.
   */
  'pageSize': (string);
  'limit': (string);
}
