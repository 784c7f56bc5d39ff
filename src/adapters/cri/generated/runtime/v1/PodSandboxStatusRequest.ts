// Original file: proto/cri/runtime/v1/api.proto


export interface PodSandboxStatusRequest {
  'podSandboxId'?: (string);
  /**
   * Ask for PodSandboxStatusResponse.info.
   */
  'verbose'?: (boolean);
}

export interface PodSandboxStatusRequest__Output {
  'podSandboxId': (string);
  /**
   * Ask for PodSandboxStatusResponse.info.
   */
  'verbose': (boolean);
}
