// Original file: proto/cri/runtime/v1/api.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The identity the container's first process started with.
 */
export interface LinuxContainerUser {
  'uid'?: (number | string | Long);
  'gid'?: (number | string | Long);
  'supplementalGroups'?: (number | string | Long)[];
}

/**
 * The identity the container's first process started with.
 */
export interface LinuxContainerUser__Output {
  'uid': (string);
  'gid': (string);
  'supplementalGroups': (string)[];
}
