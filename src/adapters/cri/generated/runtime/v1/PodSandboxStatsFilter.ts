// Original file: proto/cri/runtime/v1/api.proto


/**
 * Set fields are ANDed.
 */
export interface PodSandboxStatsFilter {
  'id'?: (string);
  'labelSelector'?: ({[key: string]: string});
}

/**
 * Set fields are ANDed.
 */
export interface PodSandboxStatsFilter__Output {
  'id': (string);
  'labelSelector': ({[key: string]: string});
}
