// Original file: proto/cri/runtime/v1/api.proto


export interface VersionResponse {
  'version'?: (string);
  'runtimeName'?: (string);
  /**
   * Semver.
   */
  'runtimeVersion'?: (string);
  /**
   * The CRI API version the runtime speaks ("v1").
   */
  'runtimeApiVersion'?: (string);
}

export interface VersionResponse__Output {
  'version': (string);
  'runtimeName': (string);
  /**
   * Semver.
   */
  'runtimeVersion': (string);
  /**
   * The CRI API version the runtime speaks ("v1").
   */
  'runtimeApiVersion': (string);
}
