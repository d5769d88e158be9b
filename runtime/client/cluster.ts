/**
 * What every tsh command after `login` starts from: the saved profile and
 * key, and, for commands that ask the cluster something (`ls`, `play`), an
 * auth API client reached through the proxy. tsh logs in to the proxy's SSH
 * port with its user certificate, asks for the `proxy:@<cluster>` subsystem
 * (a byte pipe to an auth server) and speaks mutual TLS over it with its TLS
 * certificate, verifying the auth server against the cluster's TLS CA; the
 * auth server decides what the user may see.
 */
import * as os from 'node:os';
import { withFreshHostCAs } from './hostcas';
import type { AuthClient } from '../auth/client';
import { Ports } from '../contract/ports';
import { lazyModule } from '../utils/lazy';
import { loadHostCAs, loadKey, loadTlsCredentials, StoredKey } from './keystore';
import { loadCurrentProfile, loadProfile, Profile, profileProxyHost, splitHostPort } from './profile';
import { NotFoundError } from '../utils/errors';

// The SSH and TLS clients, loaded by the commands that reach the cluster: `tsh status` and `tsh config`
// only read the profile and the key (bench/README.md, "Start-up").
const authClient = lazyModule(() => require('../auth/client') as typeof import('../auth/client'));
const tlsca = lazyModule(() => require('../tlsca') as typeof import('../tlsca'));
const dial = lazyModule(() => require('./dial') as typeof import('./dial'));

export interface CurrentLogin {
  profile: Profile;
  key: StoredKey;
  home?: string;
  /** The cluster to work in: the login's own, or one of its leaf clusters (`--cluster`). */
  cluster: string;
}

/** The profile of `proxy` (a host, or host:port) when given, else the current one, with its key; `cluster` picks a leaf cluster. */
export function currentLogin(opts: { proxy?: string; home?: string; cluster?: string } = {}): CurrentLogin {
  const profile = opts.proxy ? loadProfile(proxyHostOf(opts.proxy), opts.home) : loadCurrentProfile(opts.home);
  const cluster = opts.cluster ?? profile.cluster;
  if (cluster !== profile.cluster && !(profile.leaf_clusters ?? []).includes(cluster)) {
    const known = [profile.cluster, ...(profile.leaf_clusters ?? [])].join(', ');
    throw new NotFoundError(`cluster "${cluster}" is not known to this login (clusters: ${known}); if it was added since, run "tsh login" again`);
  }
  return { profile, key: loadKey(profileProxyHost(profile), profile.user, opts.home), home: opts.home, cluster };
}

function proxyHostOf(proxy: string): string {
  const bare = proxy.replace(/^https?:\/\//, '').split(',')[0];
  return /:\d+$/.test(bare) ? splitHostPort(bare).host : bare.replace(/^\[|\]$/g, '');
}

/** The login tsh uses on the proxy and nodes: the local OS user when the certificate allows it, else its first login. */
export function defaultLogin(key: StoredKey): string {
  const osUser = os.userInfo().username;
  return key.cert.principals.includes(osUser) ? osUser : (key.cert.principals[0] ?? osUser);
}

export interface ClusterConnection {
  /** The auth API as this user. */
  auth: AuthClient;
  close(): void;
}

/** The auth API of the login's cluster (a leaf's through the root's proxy and the leaf's tunnel), as this user. */
export async function connectToCluster(login: CurrentLogin): Promise<ClusterConnection> {
  const { profile, key, home, cluster } = login;
  const tls = loadTlsCredentials(profileProxyHost(profile), profile.user, home, cluster === profile.cluster ? undefined : cluster);
  const proxy = await dial.dialProxy({
    proxyAddr: profile.ssh_proxy_addr,
    cluster: profile.cluster,
    hostCAs: loadHostCAs(profile.cluster, home),
    privateKey: key.privateKey,
    certLine: key.certLine,
    login: defaultLogin(key),
  });
  const auth = new authClient.AuthClient({
    servers: [{ host: tlsca.AUTH_SERVER_NAME, port: Ports.auth }],
    credentials: tls,
    connect: () => dial.proxySubsystem(proxy, `proxy:@${cluster}`),
  });
  return {
    auth,
    close: () => {
      auth.close();
      proxy.end();
    },
  };
}

/** Runs `fn` with a cluster connection, closed afterwards. */
export async function withCluster<T>(login: CurrentLogin, fn: (c: ClusterConnection) => Promise<T>): Promise<T> {
  return withFreshHostCAs(
    login,
    async () => {
      const conn = await connectToCluster(login);
      try {
        return await fn(conn);
      } finally {
        conn.close();
      }
    },
    (msg) => process.stderr.write(msg + '\n'),
  );
}
