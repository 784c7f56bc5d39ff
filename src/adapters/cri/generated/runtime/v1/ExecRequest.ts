// Original file: proto/cri/runtime/v1/api.proto


/**
 * At least one of stdin, stdout, stderr is true; stderr is false when tty is true.
 */
export interface ExecRequest {
  'containerId'?: (string);
  'cmd'?: (string)[];
  'tty'?: (boolean);
  'stdin'?: (boolean);
  'stdout'?: (boolean);
  'stderr'?: (boolean);
  /**
   * The API server audit id of the request that started this session.
   */
  'auditRequestId'?: (string);
}

/**
 * At least one of stdin, stdout, stderr is true; stderr is false when tty is true.
 */
export interface ExecRequest__Output {
  'containerId': (string);
  'cmd': (string)[];
  'tty': (boolean);
  'stdin': (boolean);
  'stdout': (boolean);
  'stderr': (boolean);
  /**
   * The API server audit id of the request that started this session.
   */
  'auditRequestId': (string);
}
