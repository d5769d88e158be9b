/**
 * Reaching a node the way `tsh ssh` does (formats.md §8.3): SSH to the
 * proxy's SSH port with the user certificate, request the subsystem
 * `proxy:<host>:<port>@<cluster>` on a session channel, and run a second SSH
 * handshake to the node over that channel.
 *
 * Host checks. Proxy hop: the proxy is dialled by an address whose name need
 * not be among its certificate's principals (`<uuid>.<cluster>`, nodename,
 * public addrs), so any principal is accepted, but the certificate must be a
 * host certificate signed by the cluster's host CA, currently valid, with
 * `x-teleport-role=Proxy` and `x-teleport-authority=<cluster>`. Node hop: a
 * host certificate from the cluster's host CA that lists the requested host
 * or `<host>.<cluster>` as a principal. Plain host keys are refused on both.
 */
import { KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { blobType, Certificate, CLIENT_ALGORITHMS, clientCertIdentity, EXT_TELEPORT_AUTHORITY, EXT_TELEPORT_ROLE, isCertificateType, parseCertificate, verifyCertificate } from '../sshcert';
import { AccessDeniedError, ConnectionProblemError, TeleportError } from '../utils/errors';
import { dialTcp } from '../utils/httpconnect';
import { splitHostPort } from './profile';
import { UnknownHostCAError } from './hostcas';

export interface DialOptions {
  /** `host:port` of the proxy's SSH port. */
  proxyAddr: string;
  /** The proxy's cluster. */
  cluster: string;
  /** Host CA key blobs trusted for `cluster`. */
  hostCAs: Buffer[];
  /** A node of a leaf cluster (trusted clusters): its name and host CA keys; the proxy is still `cluster`'s. */
  leaf?: { cluster: string; hostCAs: Buffer[] };
  privateKey: KeyObject;
  certLine: string;
  /** The OS login on the node. */
  login: string;
  /** The node as the user names it. */
  host: string;
  /** 0: whichever port the node listens on. */
  port: number;
  readyTimeoutMs?: number;
  /**
   * Forward the agent (this identity) to the proxy on the subsystem's session channel: a proxy in
   * recording mode (`session_recording: proxy`) logs in to the node with it. @default false
   */
  forwardAgent?: boolean;
  /** Opens the TCP connection to the proxy. @default dialTcp (through the environment's HTTP proxy when it names one) */
  dialTcp?: (host: string, port: number, timeoutMs: number) => Promise<Socket>;
}

export interface NodeConnection {
  /** The SSH client logged in to the node. */
  node: Client;
  close(): void;
}

function hostCert(key: Buffer, what: string): Certificate {
  const type = blobType(key);
  if (!isCertificateType(type)) throw new AccessDeniedError(`${what} presented a plain ${type} host key; only host certificates from the cluster's host CA are trusted`);
  return parseCertificate(key);
}

/** Refuses a certificate from a CA that is not trusted for the cluster with UnknownHostCAError (tsh may learn new CAs: hostcas.ts). */
function checkKnownCA(cert: Certificate, what: string, cluster: string, hostCAs: Buffer[]): void {
  if (!hostCAs.some((k) => k.equals(cert.signatureKey))) {
    throw new UnknownHostCAError(`${what}'s host certificate "${cert.keyId}" is signed by an untrusted CA (none of those trusted for cluster "${cluster}"; after a host CA rotation, run "tsh login" again)`);
  }
}

/** Checks the proxy's host certificate (see the module comment); throws AccessDeniedError. */
export function checkProxyHostKey(key: Buffer, cluster: string, hostCAs: Buffer[]): void {
  const cert = hostCert(key, 'the proxy');
  checkKnownCA(cert, 'the proxy', cluster, hostCAs);
  verifyCertificate(cert, { trustedCAs: hostCAs, certType: 'host' });
  if (cert.extensions[EXT_TELEPORT_ROLE] !== 'Proxy') {
    throw new AccessDeniedError(`the proxy's host certificate "${cert.keyId}" has role "${cert.extensions[EXT_TELEPORT_ROLE] ?? 'none'}", not Proxy`);
  }
  if (cert.extensions[EXT_TELEPORT_AUTHORITY] !== cluster) {
    throw new AccessDeniedError(`the proxy's host certificate "${cert.keyId}" is from cluster "${cert.extensions[EXT_TELEPORT_AUTHORITY] ?? 'none'}", not "${cluster}"`);
  }
}

/** Checks a node's host certificate for `host` in `cluster`; throws AccessDeniedError. */
export function checkNodeHostKey(key: Buffer, host: string, cluster: string, hostCAs: Buffer[]): void {
  const cert = hostCert(key, `node "${host}"`);
  checkKnownCA(cert, `node "${host}"`, cluster, hostCAs);
  verifyCertificate(cert, { trustedCAs: hostCAs, certType: 'host' });
  const names = [host, `${host}.${cluster}`];
  if (!cert.principals.some((p) => names.includes(p))) {
    throw new AccessDeniedError(`node "${host}": host certificate "${cert.keyId}" lists neither ${names.join(' nor ')} (principals: ${cert.principals.join(', ')})`);
  }
}

/** Connects an ssh2 Client and resolves when it is ready; a refused host key becomes the reason given. */
function connectClient(config: ConnectConfig, check: (key: Buffer) => void, what: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let denied: TeleportError | undefined;
    // Why the server refused us, when it says (this project's proxy and nodes send the access decision's reason).
    let banner = '';
    client.on('banner', (text: string) => (banner += text.slice(0, 4096)));
    const fail = (err: Error) => {
      client.end();
      if (denied) return reject(denied);
      if (err instanceof TeleportError) return reject(err);
      const level = (err as { level?: string }).level;
      if (level === 'client-authentication') {
        return reject(new AccessDeniedError(banner.trim() || `${what}: the user certificate was refused (${err.message})`));
      }
      reject(new ConnectionProblemError(`${what}: ${err.message}`));
    };
    const onClose = () => fail(new Error('connection closed during the handshake'));
    client.once('ready', () => {
      client.off('error', fail);
      client.off('close', onClose);
      client.on('error', () => undefined);
      resolve(client);
    });
    client.once('error', fail);
    client.once('close', onClose);
    client.connect({
      ...config,
      algorithms: CLIENT_ALGORITHMS,
      hostVerifier: (key: Buffer) => {
        try {
          check(key);
          return true;
        } catch (err) {
          denied = err instanceof TeleportError ? err : new AccessDeniedError(`${what}: ${(err as Error).message}`);
          return false;
        }
      },
    });
  });
}

/** Requests the proxy subsystem and returns its channel once accepted. */
export function proxySubsystem(proxy: Client, request: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    proxy.subsys(request, (err, channel) => {
      if (err) return reject(new ConnectionProblemError(`the proxy refused subsystem "${request}": ${err.message}`));
      resolve(channel);
    });
  });
}

/**
 * Sends `auth-agent-req@openssh.com` on the proxy subsystem's session channel (ssh2 offers it only
 * with exec and shell), before any byte of the node's SSH connection; the agent channels the proxy
 * then opens are served by the proxy connection's agent.
 */
function forwardAgentOn(proxy: Client, channel: ClientChannel): void {
  const c = proxy as unknown as { _agentFwdEnabled?: boolean; _protocol?: { openssh_agentForward?(id: number, wantReply: boolean): void } };
  const id = (channel as unknown as { outgoing?: { id?: number } }).outgoing?.id;
  if (typeof c._protocol?.openssh_agentForward !== 'function' || id === undefined) throw new ConnectionProblemError('cannot forward the agent to the proxy: ssh2 does not have the expected shape');
  c._agentFwdEnabled = true;
  c._protocol.openssh_agentForward(id, false);
}

/** The subsystem name for a node: `proxy:<host>:<port>@<cluster>`. */
export function proxySubsystemName(host: string, port: number, cluster: string): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `proxy:${h}:${port}@${cluster}`;
}

/** Logs in to the proxy's SSH port with the user certificate, checking the proxy's host certificate. */
export async function dialProxy(opts: Omit<DialOptions, 'host' | 'port'>): Promise<Client> {
  if (opts.hostCAs.length === 0) throw new AccessDeniedError(`no host CA is trusted for cluster "${opts.cluster}" (run "tsh login" again)`);
  const { host, port } = splitHostPort(opts.proxyAddr);
  // (through the environment's HTTP proxy when it names one: utils/httpconnect.ts)
  const sock = await (opts.dialTcp ?? dialTcp)(host, port, opts.readyTimeoutMs ?? 30_000).catch((err: Error) => {
    throw new ConnectionProblemError(`proxy ${opts.proxyAddr}: ${err.message}`);
  });
  return connectClient(
    { sock, username: opts.login, agent: clientCertIdentity(opts.privateKey, opts.certLine), readyTimeout: opts.readyTimeoutMs ?? 30_000 },
    (key) => checkProxyHostKey(key, opts.cluster, opts.hostCAs),
    `proxy ${opts.proxyAddr}`,
  );
}

export async function dialNode(opts: DialOptions): Promise<NodeConnection> {
  const proxy = await dialProxy(opts);
  const agent = clientCertIdentity(opts.privateKey, opts.certLine);
  const readyTimeout = opts.readyTimeoutMs ?? 30_000;
  try {
    const nodeCluster = opts.leaf ?? { cluster: opts.cluster, hostCAs: opts.hostCAs };
    if (nodeCluster.hostCAs.length === 0) throw new AccessDeniedError(`no host CA is trusted for cluster "${nodeCluster.cluster}" (run "tsh login" again)`);
    const channel = await proxySubsystem(proxy, proxySubsystemName(opts.host, opts.port, nodeCluster.cluster));
    if (opts.forwardAgent) forwardAgentOn(proxy, channel);
    let stderr = '';
    channel.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8').slice(0, 4096)));
    const node = await connectClient(
      { sock: channel, username: opts.login, agent, readyTimeout },
      (key) => checkNodeHostKey(key, opts.host, nodeCluster.cluster, nodeCluster.hostCAs),
      `node "${opts.host}"`,
    ).catch((err: Error) => {
      const why = stderr.trim();
      if (why && err instanceof ConnectionProblemError) {
        throw why.startsWith('access denied') ? new AccessDeniedError(why) : new ConnectionProblemError(`node "${opts.host}": ${why}`);
      }
      throw err;
    });
    node.on('close', () => proxy.end());
    return {
      node,
      close: () => {
        node.end();
        proxy.end();
      },
    };
  } catch (err) {
    proxy.end();
    throw err;
  }
}
