// Original file: proto/cri/runtime/v1/api.proto


export interface RuntimeHandlerFeatures {
  'recursiveReadOnlyMounts'?: (boolean);
  /**
   * User namespaces with idmapped mounts.
   */
  'userNamespaces'?: (boolean);
}

export interface RuntimeHandlerFeatures__Output {
  'recursiveReadOnlyMounts': (boolean);
  /**
   * User namespaces with idmapped mounts.
   */
  'userNamespaces': (boolean);
}
