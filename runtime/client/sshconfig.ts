/**
 * `tsh config`: an OpenSSH client configuration for the current login, to
 * add to `~/.ssh/config`, with which stock `ssh`, `scp` and `sftp` reach the
 * cluster's nodes as `<login>@<node>.<cluster>` through the proxy, as
 * `tsh ssh` does: with the tsh key and certificate, and with both host
 * certificates (proxy and node) checked against the cluster's host CA in
 * tsh's known_hosts, StrictHostKeyChecking on.
 *
 * One block, `Host *.<cluster> !<proxy>`: the node port (3022) and a
 * ProxyCommand that logs in to the proxy's SSH port and asks for
 * `proxy:%h:%p@<cluster>`. The ProxyCommand carries its own options rather
 * than relying on a `Host <proxy>` block, which would change what a plain
 * `ssh <proxy host>` does (`ssh localhost` to the local sshd, say), and so
 * the block works from a file given to `ssh -F` too. OpenSSH checks a node
 * under `<node>.<cluster>` (a principal of every node's certificate) and the
 * proxy under its host name, which `tsh login` adds to the cluster's
 * known_hosts line and which the proxy's certificate carries (its
 * public_addr, or `localhost`, `127.0.0.1`, `::1`, which every proxy has).
 */
import * as path from 'node:path';
import { Ports } from '../contract/ports';
import { BadParameterError } from '../utils/errors';
import { shellQuote } from '../utils/shell';
import type { CurrentLogin } from './cluster';
import { checkHostName, hostCAsCover, keyPaths, KNOWN_HOSTS_FILE } from './keystore';
import { tshHome } from './paths';
import { profileProxyHost, splitHostPort } from './profile';

export interface SshConfigFacts {
  cluster: string;
  /** Leaf clusters (trusted clusters) reached through the same proxy: one more block each. */
  leafClusters: string[];
  /** The Teleport user, for the comment. */
  user: string;
  /** The proxy's SSH address. */
  proxyHost: string;
  proxyPort: number;
  identityFile: string;
  certificateFile: string;
  knownHostsFile: string;
}

/**
 * Paths go into ssh_config and into a shell command (the ProxyCommand), where OpenSSH also expands
 * `%` tokens and splits on spaces: only plain characters are taken, anything else is refused.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9_./@+=,:-]*$/;

function plainPath(p: string): string {
  if (!PLAIN_PATH.test(p)) {
    throw new BadParameterError(
      `tsh config: the path ${JSON.stringify(p)} has characters ssh_config cannot take here (only letters, digits and _ . / @ + = , : -); set TELEPORT_HOME to a directory without them`,
    );
  }
  return p;
}

/** The facts for the current login; refuses known_hosts lines saved before they named the proxy. */
export function sshConfigFacts(login: CurrentLogin): SshConfigFacts {
  const { profile } = login;
  const home = login.home ?? tshHome();
  const proxy = splitHostPort(profile.ssh_proxy_addr);
  const cluster = checkHostName(profile.cluster, 'cluster name');
  const proxyHost = checkHostName(proxy.host, 'proxy host');
  const keys = keyPaths(profileProxyHost(profile), profile.user, home);
  const knownHostsFile = path.join(home, KNOWN_HOSTS_FILE);
  if (!hostCAsCover(cluster, proxyHost, home)) {
    throw new BadParameterError(
      `${knownHostsFile} does not name the proxy ${proxyHost} as a host of cluster ${cluster} (it was written by an older tsh login): run tsh login again`,
    );
  }
  return {
    cluster,
    leafClusters: (profile.leaf_clusters ?? []).map((c) => checkHostName(c, 'leaf cluster name')),
    user: profile.user,
    proxyHost,
    proxyPort: proxy.port,
    identityFile: plainPath(keys.privateKey),
    certificateFile: plainPath(keys.sshCert),
    knownHostsFile: plainPath(knownHostsFile),
  };
}

/** The ssh_config text. */
export function formatSshConfig(f: SshConfigFacts): string {
  const options: [string, string][] = [
    ['IdentityFile', f.identityFile],
    ['CertificateFile', f.certificateFile],
    ['IdentitiesOnly', 'yes'],
    ['UserKnownHostsFile', f.knownHostsFile],
    ['StrictHostKeyChecking', 'yes'],
  ];
  const proxyHop = ['ssh', '-p', String(f.proxyPort), ...options.flatMap(([k, v]) => ['-o', `${k}=${v}`])].map(shellQuote);
  const block = (cluster: string) => [
    `Host *.${cluster} !${f.proxyHost}`,
    `    Port ${Ports.node}`,
    ...options.map(([k, v]) => `    ${k} ${v}`),
    `    ProxyCommand ${[...proxyHop, `%r@${f.proxyHost}`, '-s', `proxy:%h:%p@${cluster}`].join(' ')}`,
  ];
  return [
    `# Teleport cluster ${f.cluster} through the proxy ${f.proxyHost}:${f.proxyPort}, as Teleport user ${f.user} (tsh config).`,
    `# Add it to ~/.ssh/config, then reach a node as <login>@<node>.${f.cluster} with ssh, scp or sftp.`,
    ...block(f.cluster),
    ...f.leafClusters.flatMap((leaf) => [`# Leaf cluster ${leaf}, through the same proxy: <login>@<node>.${leaf}.`, ...block(leaf)]),
    '',
  ].join('\n');
}
