// Original file: proto/cri/runtime/v1/api.proto


export interface ImageSpec {
  /**
   * An image id, or a reference with tag or digest.
   */
  'image'?: (string);
  /**
   * Help choose a platform of a multi-platform image.
   */
  'annotations'?: ({[key: string]: string});
  /**
   * The reference as the pod spec wrote it, when known.
   */
  'userSpecifiedImage'?: (string);
  /**
   * Runtime handler to pull for; empty selects the default.
   */
  'runtimeHandler'?: (string);
  /**
   * For image volumes: the digest of the image used.
   */
  'imageRef'?: (string);
}

export interface ImageSpec__Output {
  /**
   * An image id, or a reference with tag or digest.
   */
  'image': (string);
  /**
   * Help choose a platform of a multi-platform image.
   */
  'annotations': ({[key: string]: string});
  /**
   * The reference as the pod spec wrote it, when known.
   */
  'userSpecifiedImage': (string);
  /**
   * Runtime handler to pull for; empty selects the default.
   */
  'runtimeHandler': (string);
  /**
   * For image volumes: the digest of the image used.
   */
  'imageRef': (string);
}
