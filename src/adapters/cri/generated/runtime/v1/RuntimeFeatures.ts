// Original file: proto/cri/runtime/v1/api.proto


/**
 * Features of the CRI implementation, whatever the handler.
 */
export interface RuntimeFeatures {
  'supplementalGroupsPolicy'?: (boolean);
  'userNamespacesHostNetwork'?: (boolean);
}

/**
 * Features of the CRI implementation, whatever the handler.
 */
export interface RuntimeFeatures__Output {
  'supplementalGroupsPolicy': (boolean);
  'userNamespacesHostNetwork': (boolean);
}
