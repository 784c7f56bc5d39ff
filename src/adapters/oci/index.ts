/** OCI runtime spec generation for runc: pure functions over the CRI request and what the caller read. */
export { buildContainerSpec } from './container-spec.js';
export { buildSandboxSpec } from './sandbox-spec.js';
export { imageVolumeDirs } from './image-volumes.js';
export { containerLogPath } from './log-path.js';
export { defaultSeccompProfile } from './seccomp-default.js';
export { parsePasswd, parseGroup } from './user.js';
export type * from './oci-spec.js';
export type * from './spec-input.js';
