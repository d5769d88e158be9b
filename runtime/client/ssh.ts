/**
 * `tsh ssh` from the saved profile: picks the login (`-l`, `user@`, else the
 * local OS user when the certificate allows it, else the certificate's first
 * login), dials the node through the proxy, sets up `-L`/`-R`/`-D` forwards and
 * `-A`, and runs the session.
 */
import type { Server as NetServer } from 'node:net';
import { LoginNotInCertificateError } from '../sshcert';
import { BadParameterError } from '../utils/errors';
import { currentLogin, CurrentLogin, defaultLogin } from './cluster';
import { withFreshHostCAs } from './hostcas';
import { dialNode, NodeConnection } from './dial';
import { ForwardSpec, localForward, remoteForward } from './forward';
import { loadHostCAs } from './keystore';
import { DynamicForwardSpec, dynamicForward } from './socks';
import { runSession, SessionOptions } from './session';

export interface SshOptions {
  /** `[login@]host` */
  target: string;
  command: string[];
  login?: string;
  port?: number;
  forcePty?: boolean;
  /** `-L` forwards. */
  localForwards?: ForwardSpec[];
  /** `-R` forwards. */
  remoteForwards?: ForwardSpec[];
  /** `-D` forwards (SOCKS). */
  dynamicForwards?: DynamicForwardSpec[];
  /** `-A`: forward an agent holding the tsh key and certificate. */
  forwardAgent?: boolean;
  /** `-N`: no command, only the forwards, until interrupted. */
  noCommand?: boolean;
  /** The profile of this proxy instead of the current one. */
  proxy?: string;
  /** A leaf cluster of the login's cluster (`--cluster`), reached through the same proxy. */
  cluster?: string;
  home?: string;
  session?: Omit<SessionOptions, 'command' | 'forcePty' | 'forwardAgent'>;
}

export function parseTarget(target: string): { login?: string; host: string } {
  const at = target.lastIndexOf('@');
  const login = at >= 0 ? target.slice(0, at) : undefined;
  const host = at >= 0 ? target.slice(at + 1) : target;
  if (!host) throw new BadParameterError(`"${target}": no host given (expected [user@]host)`);
  if (login === '') throw new BadParameterError(`"${target}": empty login before "@"`);
  return { login, host };
}

/** Logs in to a node through the proxy as `[login@]host` (`login` in opts wins). */
export async function connectNode(me: CurrentLogin, target: string, opts: { login?: string; port?: number; forwardAgent?: boolean } = {}): Promise<NodeConnection> {
  const { login: targetLogin, host } = parseTarget(target);
  const login = opts.login ?? targetLogin ?? defaultLogin(me.key);
  // The certificate lists the logins the roles allowed at login time: say so now rather than after a refused handshake.
  if (!me.key.cert.principals.includes(login)) throw new LoginNotInCertificateError(login, me.key.cert.keyId);
  return withFreshHostCAs(
    me,
    () =>
      dialNode({
        proxyAddr: me.profile.ssh_proxy_addr,
        cluster: me.profile.cluster,
        hostCAs: loadHostCAs(me.profile.cluster, me.home),
        ...(me.cluster !== me.profile.cluster ? { leaf: { cluster: me.cluster, hostCAs: loadHostCAs(me.cluster, me.home) } } : {}),
        privateKey: me.key.privateKey,
        certLine: me.key.certLine,
        login,
        host,
        port: opts.port ?? 0,
        // A recording proxy logs in to the node with the forwarded agent (`-A`).
        ...(opts.forwardAgent ? { forwardAgent: true } : {}),
      }),
    (msg) => process.stderr.write(msg + '\n'),
  );
}

/** Runs `tsh ssh` and returns the exit code to exit with. */
export async function sshCommand(opts: SshOptions): Promise<number> {
  const me = currentLogin({ proxy: opts.proxy, home: opts.home, cluster: opts.cluster });
  const conn = await connectNode(me, opts.target, opts);
  const listeners: NetServer[] = [];
  const stderr = opts.session?.stderr ?? process.stderr;
  const warn = (msg: string) => stderr.write(msg + '\n');
  try {
    for (const f of opts.localForwards ?? []) listeners.push(await localForward(conn.node, f, warn));
    for (const f of opts.dynamicForwards ?? []) listeners.push(await dynamicForward(conn.node, f, warn));
    for (const f of opts.remoteForwards ?? []) {
      const bound = await remoteForward(conn.node, f, warn);
      if (f.bindPort === 0) warn(`Allocated port ${bound} for remote forward to ${f.host}:${f.hostPort}`);
    }
    if (opts.noCommand) {
      await new Promise<void>((resolve) => conn.node.once('close', () => resolve()));
      return 0;
    }
    return await runSession(conn.node, {
      ...opts.session,
      command: opts.command.length ? opts.command.join(' ') : undefined,
      forcePty: opts.forcePty,
      forwardAgent: opts.forwardAgent,
    });
  } finally {
    for (const l of listeners) l.close();
    conn.close();
  }
}
