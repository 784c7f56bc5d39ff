// Original file: proto/cri/runtime/v1/api.proto


export interface VersionRequest {
  /**
   * The CRI API version kubelet speaks, e.g. "v1".
   */
  'version'?: (string);
}

export interface VersionRequest__Output {
  /**
   * The CRI API version kubelet speaks, e.g. "v1".
   */
  'version': (string);
}
