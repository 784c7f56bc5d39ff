// Original file: proto/cri/runtime/v1/api.proto

import type { NamespaceMode as _runtime_v1_NamespaceMode, NamespaceMode__Output as _runtime_v1_NamespaceMode__Output } from '../../runtime/v1/NamespaceMode.js';
import type { UserNamespace as _runtime_v1_UserNamespace, UserNamespace__Output as _runtime_v1_UserNamespace__Output } from '../../runtime/v1/UserNamespace.js';

export interface NamespaceOption {
  'network'?: (_runtime_v1_NamespaceMode);
  /**
   * The CRI default (0) is POD; kubelet sets CONTAINER explicitly for ordinary pods.
   */
  'pid'?: (_runtime_v1_NamespaceMode);
  'ipc'?: (_runtime_v1_NamespaceMode);
  /**
   * The container whose namespaces TARGET refers to.
   */
  'targetId'?: (string);
  /**
   * Unset means mode POD (older kubelets do not send it).
   */
  'usernsOptions'?: (_runtime_v1_UserNamespace | null);
}

export interface NamespaceOption__Output {
  'network': (_runtime_v1_NamespaceMode__Output);
  /**
   * The CRI default (0) is POD; kubelet sets CONTAINER explicitly for ordinary pods.
   */
  'pid': (_runtime_v1_NamespaceMode__Output);
  'ipc': (_runtime_v1_NamespaceMode__Output);
  /**
   * The container whose namespaces TARGET refers to.
   */
  'targetId': (string);
  /**
   * Unset means mode POD (older kubelets do not send it).
   */
  'usernsOptions': (_runtime_v1_UserNamespace__Output | null);
}
