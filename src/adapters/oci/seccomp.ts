import { InvalidArgumentError } from '../../domain/errors.js';
import { absolutePath } from '../../domain/text.js';
import type { SecurityProfile__Output } from '../cri/generated/runtime/v1/SecurityProfile.js';
import type { OciSeccomp, SeccompSyscall } from './oci-spec.js';
import { defaultSeccompProfile } from './seccomp-default.js';

/** The prefix of a host profile in the deprecated string field (and, tolerated, in localhost_ref). */
export const LOCALHOST_PREFIX = 'localhost/';

export type SeccompChoice = { kind: 'unconfined' } | { kind: 'default' } | { kind: 'localhost'; path: string };

/**
 * What the request asks for. The `seccomp` message wins over the deprecated
 * `seccomp_profile_path` string; neither set means unconfined, as with containerd's
 * default config (kubelet sends RuntimeDefault explicitly when the pod wants it).
 */
export function seccompChoice(
  profile: SecurityProfile__Output | null,
  profilePath: string,
  fieldPrefix: string,
): SeccompChoice {
  if (profile !== null) {
    const field = `${fieldPrefix}.seccomp`;
    if (profile.profileType !== 'Localhost' && profile.localhostRef !== '') {
      throw new InvalidArgumentError(`${field}.localhost_ref`, 'may only be set when profile_type is Localhost');
    }
    switch (profile.profileType) {
      case 'Unconfined':
        return { kind: 'unconfined' };
      case 'RuntimeDefault':
        return { kind: 'default' };
      case 'Localhost':
        return {
          kind: 'localhost',
          path: localPath(profile.localhostRef.replace(/^localhost\//, ''), `${field}.localhost_ref`),
        };
      default:
        throw new InvalidArgumentError(`${field}.profile_type`, `unknown profile type ${String(profile.profileType)}`);
    }
  }
  const field = `${fieldPrefix}.seccomp_profile_path`;
  switch (profilePath) {
    case '':
    case 'unconfined':
      return { kind: 'unconfined' };
    case 'runtime/default':
    case 'docker/default':
      return { kind: 'default' };
    default:
      if (!profilePath.startsWith(LOCALHOST_PREFIX)) {
        throw new InvalidArgumentError(
          field,
          `unsupported profile "${profilePath}": use unconfined, runtime/default, docker/default or localhost/<path>`,
        );
      }
      return { kind: 'localhost', path: localPath(profilePath.slice(LOCALHOST_PREFIX.length), field) };
  }
}

/** An absolute host path without `..` or control bytes (`localhost/../../etc/shadow` is refused, not cleaned). */
function localPath(path: string, field: string): string {
  if (!path.startsWith('/'))
    throw new InvalidArgumentError(field, `the localhost profile "${path}" must be an absolute path on the host`);
  return absolutePath(path, field);
}

export interface SeccompContext {
  privileged: boolean;
  hostSeccomp: boolean;
  boundingCaps: readonly string[];
  arch: string;
  loadLocalhostProfile: (path: string) => unknown;
  field: string;
}

/** The spec's linux.seccomp for a choice; undefined means none (unconfined). */
export function seccompFor(choice: SeccompChoice, ctx: SeccompContext): OciSeccomp | undefined {
  // A privileged container is unconfined by definition: it may do anything the host can.
  if (ctx.privileged || choice.kind === 'unconfined') return undefined;
  if (!ctx.hostSeccomp) throw new InvalidArgumentError(ctx.field, 'seccomp is not supported by this host kernel');
  if (choice.kind === 'default') return defaultSeccompProfile(ctx.boundingCaps, ctx.arch);
  let loaded: unknown;
  try {
    loaded = ctx.loadLocalhostProfile(choice.path);
  } catch (err) {
    throw new InvalidArgumentError(ctx.field, `cannot load seccomp profile ${choice.path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof loaded === 'string') {
    try {
      loaded = JSON.parse(loaded);
    } catch (err) {
      // JSON.parse quotes the text it failed on: the caller must not learn a host file's content.
      throw new InvalidArgumentError(ctx.field, `seccomp profile ${choice.path} is not valid JSON`, { cause: err });
    }
  }
  return parseSeccompProfile(loaded, `${ctx.field} (${choice.path})`);
}

/**
 * Keep the OCI fields of a profile file (containerd reads it straight into the spec's
 * LinuxSeccomp, so docker-only keys such as archMap are ignored there as here).
 */
export function parseSeccompProfile(json: unknown, field: string): OciSeccomp {
  const bad = (detail: string): never => {
    throw new InvalidArgumentError(field, `invalid seccomp profile: ${detail}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return bad('not a JSON object');
  const o = json as Record<string, unknown>;
  if (typeof o.defaultAction !== 'string' || !o.defaultAction.startsWith('SCMP_ACT_'))
    return bad('defaultAction is missing');
  const profile: OciSeccomp = { defaultAction: o.defaultAction as OciSeccomp['defaultAction'] };
  if (typeof o.defaultErrnoRet === 'number') profile.defaultErrnoRet = o.defaultErrnoRet;
  if (Array.isArray(o.architectures)) profile.architectures = o.architectures.map(String);
  if (Array.isArray(o.flags)) profile.flags = o.flags.map(String);
  if (o.syscalls !== undefined && o.syscalls !== null) {
    if (!Array.isArray(o.syscalls)) return bad('syscalls is not a list');
    profile.syscalls = o.syscalls.map((rule: unknown, i: number): SeccompSyscall => {
      const r = (rule ?? {}) as Record<string, unknown>;
      if (!Array.isArray(r.names) || typeof r.action !== 'string') return bad(`syscalls[${i}] needs names and action`);
      const out: SeccompSyscall = { names: r.names.map(String), action: r.action as SeccompSyscall['action'] };
      if (typeof r.errnoRet === 'number') out.errnoRet = r.errnoRet;
      if (Array.isArray(r.args)) out.args = r.args as SeccompSyscall['args'];
      return out;
    });
  }
  return profile;
}
