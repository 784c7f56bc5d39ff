// Original file: proto/cri/runtime/v1/api.proto


/**
 * Registry credentials: never log password, auth, identity_token or registry_token.
 */
export interface AuthConfig {
  'username'?: (string);
  'password'?: (string);
  'auth'?: (string);
  'serverAddress'?: (string);
  'identityToken'?: (string);
  'registryToken'?: (string);
}

/**
 * Registry credentials: never log password, auth, identity_token or registry_token.
 */
export interface AuthConfig__Output {
  'username': (string);
  'password': (string);
  'auth': (string);
  'serverAddress': (string);
  'identityToken': (string);
  'registryToken': (string);
}
