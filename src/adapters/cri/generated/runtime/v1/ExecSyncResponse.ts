// Original file: proto/cri/runtime/v1/api.proto


export interface ExecSyncResponse {
  /**
   * Each capped at 16 MiB by the runtime; the rest is dropped without an error.
   */
  'stdout'?: (Buffer | Uint8Array | string);
  'stderr'?: (Buffer | Uint8Array | string);
  'exitCode'?: (number);
}

export interface ExecSyncResponse__Output {
  /**
   * Each capped at 16 MiB by the runtime; the rest is dropped without an error.
   */
  'stdout': (Buffer);
  'stderr': (Buffer);
  'exitCode': (number);
}
