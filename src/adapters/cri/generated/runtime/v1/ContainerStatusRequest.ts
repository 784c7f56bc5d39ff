// Original file: proto/cri/runtime/v1/api.proto


export interface ContainerStatusRequest {
  'containerId'?: (string);
  /**
   * Ask for ContainerStatusResponse.info.
   */
  'verbose'?: (boolean);
}

export interface ContainerStatusRequest__Output {
  'containerId': (string);
  /**
   * Ask for ContainerStatusResponse.info.
   */
  'verbose': (boolean);
}
