// Original file: proto/cri/runtime/v1/api.proto

export const NamespaceMode = {
  /**
   * shared by the pod's containers
   */
  POD: 'POD',
  /**
   * the container's own
   */
  CONTAINER: 'CONTAINER',
  /**
   * the host's
   */
  NODE: 'NODE',
  /**
   * another container's: NamespaceOption.target_id
   */
  TARGET: 'TARGET',
} as const;

export type NamespaceMode =
  /**
   * shared by the pod's containers
   */
  | 'POD'
  | 0
  /**
   * the container's own
   */
  | 'CONTAINER'
  | 1
  /**
   * the host's
   */
  | 'NODE'
  | 2
  /**
   * another container's: NamespaceOption.target_id
   */
  | 'TARGET'
  | 3

export type NamespaceMode__Output = typeof NamespaceMode[keyof typeof NamespaceMode]
