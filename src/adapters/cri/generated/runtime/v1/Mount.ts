// Original file: proto/cri/runtime/v1/api.proto

import type { MountPropagation as _runtime_v1_MountPropagation, MountPropagation__Output as _runtime_v1_MountPropagation__Output } from '../../runtime/v1/MountPropagation.js';
import type { IDMapping as _runtime_v1_IDMapping, IDMapping__Output as _runtime_v1_IDMapping__Output } from '../../runtime/v1/IDMapping.js';
import type { ImageSpec as _runtime_v1_ImageSpec, ImageSpec__Output as _runtime_v1_ImageSpec__Output } from '../../runtime/v1/ImageSpec.js';

export interface Mount {
  'containerPath'?: (string);
  /**
   * Empty when `image` is set. A symlink is followed.
   */
  'hostPath'?: (string);
  'readonly'?: (boolean);
  'selinuxRelabel'?: (boolean);
  'propagation'?: (_runtime_v1_MountPropagation);
  /**
   * Upstream spells these two in camelCase; the wire only knows the numbers.
   */
  'uidMappings'?: (_runtime_v1_IDMapping)[];
  'gidMappings'?: (_runtime_v1_IDMapping)[];
  /**
   * Recursive read-only; only with readonly = true and PROPAGATION_PRIVATE.
   */
  'recursiveReadOnly'?: (boolean);
  /**
   * An image volume: the image (as PullImageResponse.image_ref) mounted read-only.
   */
  'image'?: (_runtime_v1_ImageSpec | null);
  /**
   * Sub-directory of `image` to mount instead of its root.
   */
  'imageSubPath'?: (string);
}

export interface Mount__Output {
  'containerPath': (string);
  /**
   * Empty when `image` is set. A symlink is followed.
   */
  'hostPath': (string);
  'readonly': (boolean);
  'selinuxRelabel': (boolean);
  'propagation': (_runtime_v1_MountPropagation__Output);
  /**
   * Upstream spells these two in camelCase; the wire only knows the numbers.
   */
  'uidMappings': (_runtime_v1_IDMapping__Output)[];
  'gidMappings': (_runtime_v1_IDMapping__Output)[];
  /**
   * Recursive read-only; only with readonly = true and PROPAGATION_PRIVATE.
   */
  'recursiveReadOnly': (boolean);
  /**
   * An image volume: the image (as PullImageResponse.image_ref) mounted read-only.
   */
  'image': (_runtime_v1_ImageSpec__Output | null);
  /**
   * Sub-directory of `image` to mount instead of its root.
   */
  'imageSubPath': (string);
}
