// Original file: proto/cri/runtime/v1/api.proto


export interface PullImageResponse {
  /**
   * The image's id on this node: the same value as Image.id, Container.image_id and
   * ContainerStatus.image_id.
   */
  'imageRef'?: (string);
}

export interface PullImageResponse__Output {
  /**
   * The image's id on this node: the same value as Image.id, Container.image_id and
   * ContainerStatus.image_id.
   */
  'imageRef': (string);
}
