// Original file: proto/cri/runtime/v1/api.proto


export interface ExecResponse {
  /**
   * Where the streaming server waits for this session.
   */
  'url'?: (string);
}

export interface ExecResponse__Output {
  /**
   * Where the streaming server waits for this session.
   */
  'url': (string);
}
