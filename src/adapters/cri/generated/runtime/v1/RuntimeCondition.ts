// Original file: proto/cri/runtime/v1/api.proto


/**
 * kubelet requires the types "RuntimeReady" and "NetworkReady" to be true for a ready
 * node; any other type is informational.
 */
export interface RuntimeCondition {
  'type'?: (string);
  'status'?: (boolean);
  /**
   * CamelCase.
   */
  'reason'?: (string);
  'message'?: (string);
}

/**
 * kubelet requires the types "RuntimeReady" and "NetworkReady" to be true for a ready
 * node; any other type is informational.
 */
export interface RuntimeCondition__Output {
  'type': (string);
  'status': (boolean);
  /**
   * CamelCase.
   */
  'reason': (string);
  'message': (string);
}
