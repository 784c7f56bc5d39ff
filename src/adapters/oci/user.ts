import { InvalidArgumentError } from '../../domain/errors.js';
import type { Int64Value__Output } from '../cri/generated/runtime/v1/Int64Value.js';
import type { OciUser } from './oci-spec.js';
import { idField, MAX_ID } from './values.js';

/*
 * The process user, resolved against the image's /etc/passwd and /etc/group the way
 * containerd's WithUser / WithAdditionalGIDs do, but over file contents the caller read
 * from a read-only view of the image (never by writing to it).
 */

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function records(text: string | undefined): string[][] {
  if (text === undefined) return [];
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

function numeric(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/** Entries of an /etc/passwd; malformed lines are skipped, as libc skips them. */
export function parsePasswd(text: string | undefined): PasswdEntry[] {
  return records(text).flatMap(([name, , uid, gid]) => {
    const u = numeric(uid);
    const g = numeric(gid);
    return name && u !== undefined && g !== undefined ? [{ name, uid: u, gid: g }] : [];
  });
}

/** Entries of an /etc/group. */
export function parseGroup(text: string | undefined): GroupEntry[] {
  return records(text).flatMap(([name, , gid, members]) => {
    const g = numeric(gid);
    if (!name || g === undefined) return [];
    return [
      {
        name,
        gid: g,
        members: (members ?? '')
          .split(',')
          .map((m) => m.trim())
          .filter(Boolean),
      },
    ];
  });
}

/** Where a user string came from, so an error names the right field. */
export interface UserSource {
  userstr: string;
  field: string;
}

/**
 * The user string the CRI asks for (containerd's generateUserString): the username wins
 * over the uid, the group is appended; a group without a user is refused, since there
 * would be no user to give it to.
 */
export function requestedUser(
  runAsUsername: string,
  runAsUser: Int64Value__Output | null,
  runAsGroup: Int64Value__Output | null,
  fieldPrefix: string,
): string {
  let user = '';
  if (runAsUser !== null) user = String(idField(runAsUser.value, `${fieldPrefix}.run_as_user`));
  if (runAsUsername !== '') user = runAsUsername;
  if (runAsGroup === null) return user;
  const group = idField(runAsGroup.value, `${fieldPrefix}.run_as_group`);
  if (user === '') {
    throw new InvalidArgumentError(
      `${fieldPrefix}.run_as_group`,
      `group ${group} is set without run_as_user or run_as_username`,
    );
  }
  return `${user}:${group}`;
}

/** uid, gid and the passwd name of the user (if the image knows it). */
export interface ResolvedUser {
  uid: number;
  gid: number;
  name?: string;
}

/**
 * Resolve `user[:group]` against the image: a numeric uid missing from /etc/passwd runs
 * with gid 0 (as docker does), a name missing from it is an error; a group name must be in
 * /etc/group.
 */
export function resolveUser(
  source: UserSource,
  passwdText: string | undefined,
  groupText: string | undefined,
): ResolvedUser {
  const { userstr, field } = source;
  if (userstr === '') return withName({ uid: 0, gid: 0 }, passwdText);
  const parts = userstr.split(':');
  if (parts.length > 2) throw new InvalidArgumentError(field, `invalid user "${userstr}"`);
  const [userPart = '', groupPart] = parts;
  const passwd = parsePasswd(passwdText);
  let resolved: ResolvedUser;
  const uid = numeric(userPart);
  if (uid !== undefined) {
    const entry = passwd.find((p) => p.uid === uid);
    resolved = entry ? { uid, gid: entry.gid, name: entry.name } : { uid, gid: 0 };
  } else {
    const entry = passwd.find((p) => p.name === userPart);
    if (!entry) {
      const why = passwdText === undefined ? 'the image has no /etc/passwd' : "it is not in the image's /etc/passwd";
      throw new InvalidArgumentError(field, `unknown user "${userPart}": ${why}`);
    }
    resolved = { uid: entry.uid, gid: entry.gid, name: entry.name };
  }
  if (groupPart === undefined) return resolved;
  const gid = numeric(groupPart);
  if (gid !== undefined) return { ...resolved, gid };
  const group = parseGroup(groupText).find((g) => g.name === groupPart);
  if (!group) throw new InvalidArgumentError(field, `unknown group "${groupPart}" in the image's /etc/group`);
  return { ...resolved, gid: group.gid };
}

function withName(user: ResolvedUser, passwdText: string | undefined): ResolvedUser {
  const entry = parsePasswd(passwdText).find((p) => p.uid === user.uid);
  return entry ? { ...user, name: entry.name } : user;
}

/**
 * The gids of the groups that list `username` as a member, in /etc/group order, leaving
 * out the user's own group of the same name (that one is the primary group, not a
 * supplementary one).
 */
export function memberGroups(username: string | undefined, groupText: string | undefined): number[] {
  if (username === undefined) return [];
  return parseGroup(groupText)
    .filter((g) => g.name !== username && g.members.includes(username))
    .map((g) => g.gid);
}

/**
 * The OCI user: the primary gid is always in additionalGids (containerd's fix for
 * CVE-2023-25173, so a setgroups() in the container cannot drop it), then the image's
 * group memberships and the configured supplemental groups, merged sorted and unique as
 * containerd's WithSupplementalGroups does.
 */
export function ociUser(user: ResolvedUser, imageGroups: readonly number[], configured: readonly number[]): OciUser {
  const gids = [...new Set([user.gid, ...imageGroups, ...configured])].sort((a, b) => a - b);
  return { uid: user.uid, gid: user.gid, additionalGids: gids };
}

/** The configured supplemental groups as ids. */
export function supplementalGroups(values: readonly string[], field: string): number[] {
  return values.map((v, i) => idField(v, `${field}[${i}]`));
}
