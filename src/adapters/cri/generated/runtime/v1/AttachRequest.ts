// Original file: proto/cri/runtime/v1/api.proto


/**
 * Same rules as ExecRequest; tty must match the container's config.
 */
export interface AttachRequest {
  'containerId'?: (string);
  'stdin'?: (boolean);
  'tty'?: (boolean);
  'stdout'?: (boolean);
  'stderr'?: (boolean);
  'auditRequestId'?: (string);
}

/**
 * Same rules as ExecRequest; tty must match the container's config.
 */
export interface AttachRequest__Output {
  'containerId': (string);
  'stdin': (boolean);
  'tty': (boolean);
  'stdout': (boolean);
  'stderr': (boolean);
  'auditRequestId': (string);
}
