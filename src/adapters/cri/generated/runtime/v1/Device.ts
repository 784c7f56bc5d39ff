// Original file: proto/cri/runtime/v1/api.proto


export interface Device {
  'containerPath'?: (string);
  'hostPath'?: (string);
  /**
   * Some of "r", "w", "m" (mknod).
   */
  'permissions'?: (string);
}

export interface Device__Output {
  'containerPath': (string);
  'hostPath': (string);
  /**
   * Some of "r", "w", "m" (mknod).
   */
  'permissions': (string);
}
