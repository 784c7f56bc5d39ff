// Original file: proto/cri/runtime/v1/api.proto


/**
 * Set fields are ANDed.
 */
export interface ContainerStatsFilter {
  'id'?: (string);
  'podSandboxId'?: (string);
  'labelSelector'?: ({[key: string]: string});
}

/**
 * Set fields are ANDed.
 */
export interface ContainerStatsFilter__Output {
  'id': (string);
  'podSandboxId': (string);
  'labelSelector': ({[key: string]: string});
}
