// Original file: proto/cri/runtime/v1/api.proto

import type { Int64Value as _runtime_v1_Int64Value, Int64Value__Output as _runtime_v1_Int64Value__Output } from '../../runtime/v1/Int64Value.js';
import type { ImageSpec as _runtime_v1_ImageSpec, ImageSpec__Output as _runtime_v1_ImageSpec__Output } from '../../runtime/v1/ImageSpec.js';
import type { Long } from '@grpc/proto-loader';

export interface Image {
  /**
   * Equal to PullImageResponse.image_ref for the same image.
   */
  'id'?: (string);
  'repoTags'?: (string)[];
  'repoDigests'?: (string)[];
  'size'?: (number | string | Long);
  /**
   * The image's default user, as a uid or (if not numeric) a name.
   */
  'uid'?: (_runtime_v1_Int64Value | null);
  'username'?: (string);
  'spec'?: (_runtime_v1_ImageSpec | null);
  /**
   * A hint that garbage collection should keep it; removal still works.
   */
  'pinned'?: (boolean);
}

export interface Image__Output {
  /**
   * Equal to PullImageResponse.image_ref for the same image.
   */
  'id': (string);
  'repoTags': (string)[];
  'repoDigests': (string)[];
  'size': (string);
  /**
   * The image's default user, as a uid or (if not numeric) a name.
   */
  'uid': (_runtime_v1_Int64Value__Output | null);
  'username': (string);
  'spec': (_runtime_v1_ImageSpec__Output | null);
  /**
   * A hint that garbage collection should keep it; removal still works.
   */
  'pinned': (boolean);
}
