/**
 * Looks up the OS account a user logs in as (through NSS, so LDAP and the
 * like work as for sshd), and builds the command line that runs a program as
 * that account: through the PAM launcher when PAM is on, else `setpriv` with
 * the account's supplementary groups when the node runs as root, or the
 * program itself when the node already is that user.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { AccessDeniedError } from '../utils/errors';
import { PamSettings } from './pam';

const execFileP = promisify(execFile);

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

const LOGIN_RE = /^[a-z_][a-z0-9_.-]*[$]?$/i;
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export async function lookupUser(login: string): Promise<OsUser> {
  if (!LOGIN_RE.test(login) || login.length > 32) throw new AccessDeniedError(`invalid login "${login}"`);
  let out: string;
  try {
    out = (await execFileP('getent', ['passwd', login], { timeout: 5000 })).stdout;
  } catch {
    throw new AccessDeniedError(`unknown user "${login}" on this node`);
  }
  const f = out.trim().split('\n')[0].split(':');
  if (f.length < 7 || f[0] !== login) throw new AccessDeniedError(`unknown user "${login}" on this node`);
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/', shell: f[6] || '/bin/sh' };
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
