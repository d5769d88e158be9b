/**
 * Looks up the OS account a user logs in as (through NSS, so LDAP and the
 * like work as for sshd; passwd.ts, without a process per look-up), and builds the command line that runs a program as
 * that account: through the PAM launcher when PAM is on, else `setpriv` with
 * the account's supplementary groups when the node runs as root, or the
 * program itself when the node already is that user.
 */
import * as fs from 'node:fs';
import { AccessDeniedError } from '../utils/errors';
import { PamSettings } from './pam';
import { findPasswdHelper, type PasswdEntry, PasswdResolver } from './passwd';

export type OsUser = PasswdEntry;

const LOGIN_RE = /^[a-z_][a-z0-9_.-]*[$]?$/i;
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

let resolver: PasswdResolver | undefined;

/** The OS account `login`; AccessDeniedError when the name is malformed, there is no such account, or the look-up fails. */
export async function lookupUser(login: string, accounts: PasswdResolver = (resolver ??= new PasswdResolver(findPasswdHelper()))): Promise<OsUser> {
  if (!LOGIN_RE.test(login) || login.length > 32) throw new AccessDeniedError(`invalid login "${login}"`);
  let found: OsUser | undefined;
  try {
    found = await accounts.lookup(login);
  } catch (err) {
    throw new AccessDeniedError(`cannot look up user "${login}" on this node: ${(err as Error).message}`);
  }
  if (!found) throw new AccessDeniedError(`unknown user "${login}" on this node`);
  return found;
}

/**
 * [file, args] that run `file args` as `user`, inside a PAM session when `pam` is given;
 * refuses what this process cannot do.
 */
export function asUser(user: OsUser, file: string, args: string[], pam?: PamSettings): [string, string[]] {
  const self = process.getuid?.() ?? -1;
  if (self !== user.uid && self !== 0) throw new AccessDeniedError(`this node runs as uid ${self} and cannot start sessions for "${user.name}"`);
  if (pam) return [pam.launcher, [pam.service, user.name, '--', file, ...args]];
  if (self === user.uid) return [file, args];
  if (!SETPRIV) throw new AccessDeniedError('setpriv (util-linux) is needed to start sessions as another user');
  return [SETPRIV, ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', file, ...args]];
}

/** The login shell's arguments: an interactive login shell, or `-c command`. */
export function shellArgs(command?: string): string[] {
  return command === undefined ? ['-l'] : ['-c', command];
}
