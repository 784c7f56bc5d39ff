// Original file: proto/cri/runtime/v1/api.proto

import type { PsiData as _runtime_v1_PsiData, PsiData__Output as _runtime_v1_PsiData__Output } from '../../runtime/v1/PsiData.js';

/**
 * Pressure stall information of one resource. Upstream capitalises these field names.
 */
export interface PsiStats {
  /**
   * All tasks stalled.
   */
  'Full'?: (_runtime_v1_PsiData | null);
  /**
   * At least one task stalled.
   */
  'Some'?: (_runtime_v1_PsiData | null);
}

/**
 * Pressure stall information of one resource. Upstream capitalises these field names.
 */
export interface PsiStats__Output {
  /**
   * All tasks stalled.
   */
  'Full': (_runtime_v1_PsiData__Output | null);
  /**
   * At least one task stalled.
   */
  'Some': (_runtime_v1_PsiData__Output | null);
}
