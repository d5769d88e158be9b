/**
 * `tsh ssh` from the saved profile: picks the login (`-l`, `user@`, else the
 * local OS user when the certificate allows it, else the certificate's first
 * login), dials the node through the proxy and runs the session.
 */
import * as os from 'node:os';
import { BadParameterError } from '../utils/errors';
import { dialNode } from './dial';
import { loadHostCAs, loadKey } from './keystore';
import { loadCurrentProfile, profileProxyHost } from './profile';
import { runSession, SessionOptions } from './session';

export interface SshOptions {
  /** `[login@]host` */
  target: string;
  command: string[];
  login?: string;
  port?: number;
  forcePty?: boolean;
  home?: string;
  session?: Omit<SessionOptions, 'command' | 'forcePty'>;
}

export function parseTarget(target: string): { login?: string; host: string } {
  const at = target.lastIndexOf('@');
  const login = at >= 0 ? target.slice(0, at) : undefined;
  const host = at >= 0 ? target.slice(at + 1) : target;
  if (!host) throw new BadParameterError(`"${target}": no host given (expected [user@]host)`);
  if (login === '') throw new BadParameterError(`"${target}": empty login before "@"`);
  return { login, host };
}

/** Runs `tsh ssh` and returns the exit code to exit with. */
export async function sshCommand(opts: SshOptions): Promise<number> {
  const profile = loadCurrentProfile(opts.home);
  const key = loadKey(profileProxyHost(profile), profile.user, opts.home);
  const { login: targetLogin, host } = parseTarget(opts.target);
  const osUser = os.userInfo().username;
  const login = opts.login ?? targetLogin ?? (key.cert.principals.includes(osUser) ? osUser : key.cert.principals[0] ?? osUser);
  const conn = await dialNode({
    proxyAddr: profile.ssh_proxy_addr,
    cluster: profile.cluster,
    hostCAs: loadHostCAs(profile.cluster, opts.home),
    privateKey: key.privateKey,
    certLine: key.certLine,
    login,
    host,
    port: opts.port ?? 0,
  });
  try {
    return await runSession(conn.node, { ...opts.session, command: opts.command.length ? opts.command.join(' ') : undefined, forcePty: opts.forcePty });
  } finally {
    conn.close();
  }
}
