// Original file: proto/cri/runtime/v1/api.proto

import type { PodSandboxStateValue as _runtime_v1_PodSandboxStateValue, PodSandboxStateValue__Output as _runtime_v1_PodSandboxStateValue__Output } from '../../runtime/v1/PodSandboxStateValue.js';

/**
 * Set fields are ANDed.
 */
export interface PodSandboxFilter {
  'id'?: (string);
  'state'?: (_runtime_v1_PodSandboxStateValue | null);
  /**
   * Exact matches only, ANDed.
   */
  'labelSelector'?: ({[key: string]: string});
}

/**
 * Set fields are ANDed.
 */
export interface PodSandboxFilter__Output {
  'id': (string);
  'state': (_runtime_v1_PodSandboxStateValue__Output | null);
  /**
   * Exact matches only, ANDed.
   */
  'labelSelector': ({[key: string]: string});
}
