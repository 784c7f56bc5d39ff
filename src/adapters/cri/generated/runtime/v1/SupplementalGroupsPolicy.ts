// Original file: proto/cri/runtime/v1/api.proto

export const SupplementalGroupsPolicy = {
  /**
   * Merge the requested groups with the image's /etc/group entries for the user.
   */
  Merge: 'Merge',
  /**
   * Only the requested groups.
   */
  Strict: 'Strict',
} as const;

export type SupplementalGroupsPolicy =
  /**
   * Merge the requested groups with the image's /etc/group entries for the user.
   */
  | 'Merge'
  | 0
  /**
   * Only the requested groups.
   */
  | 'Strict'
  | 1

export type SupplementalGroupsPolicy__Output = typeof SupplementalGroupsPolicy[keyof typeof SupplementalGroupsPolicy]
