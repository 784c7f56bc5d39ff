// Original file: proto/cri/runtime/v1/api.proto


/**
 * (name, attempt) is unique within a sandbox for the sandbox's whole life.
 */
export interface ContainerMetadata {
  'name'?: (string);
  'attempt'?: (number);
}

/**
 * (name, attempt) is unique within a sandbox for the sandbox's whole life.
 */
export interface ContainerMetadata__Output {
  'name': (string);
  'attempt': (number);
}
