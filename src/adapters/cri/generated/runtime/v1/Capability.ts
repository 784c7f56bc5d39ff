// Original file: proto/cri/runtime/v1/api.proto


/**
 * Dropping a capability drops it from every set. add_capabilities go to every set but
 * the ambient one; add_ambient_capabilities go to every set including it.
 */
export interface Capability {
  'addCapabilities'?: (string)[];
  'dropCapabilities'?: (string)[];
  'addAmbientCapabilities'?: (string)[];
}

/**
 * Dropping a capability drops it from every set. add_capabilities go to every set but
 * the ambient one; add_ambient_capabilities go to every set including it.
 */
export interface Capability__Output {
  'addCapabilities': (string)[];
  'dropCapabilities': (string)[];
  'addAmbientCapabilities': (string)[];
}
