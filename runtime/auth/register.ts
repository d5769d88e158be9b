/**
 * Joining a cluster (the client side): make keys, check the auth server's TLS
 * CA against the CA pin, then trade the join token and the public keys for
 * host certificates. A pin mismatch stops before the token is sent. Without a
 * pin the node joins but warns that the auth server was not authenticated.
 */
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../sshcert';
import { generateTlsKey, matchesPin, publicKeyPem } from '../tlsca';
import { AccessDeniedError, ConnectionProblemError, TeleportError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { AuthClient, AuthClientOptions, HostPort } from './client';
import { Identity } from './identity';
import { SystemRole } from './resources';
import { PackedKeys } from './server';

export interface RegisterOptions {
  servers: HostPort[];
  token: string;
  caPins: string[];
  role: SystemRole;
  hostUUID: string;
  nodeName: string;
  additionalPrincipals: string[];
  dnsNames: string[];
  log: Logger;
  /** Reaches the auth server through a byte stream instead of TCP (a node behind NAT: through the proxy). */
  connect?: AuthClientOptions['connect'];
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

/** Reads the cluster's TLS CA certificates (two during a host CA rotation) from an auth server without trusting them yet. */
export async function fetchClusterCAs(server: HostPort, connect?: AuthClientOptions['connect']): Promise<string[]> {
  const client = new AuthClient({ servers: [server], ...(connect ? { connect } : {}) });
  try {
    const res = await client.get<{ tls_ca: string; tls_ca_certs?: string[] }>('/v1/cacert');
    return (res.tls_ca_certs ?? [res.tls_ca]).map(unb64);
  } finally {
    client.close();
  }
}

async function registerWith(server: HostPort, opts: RegisterOptions, keys: { ssh: ReturnType<typeof generateKeyPair>; tls: string }): Promise<Identity> {
  let cas = await fetchClusterCAs(server, opts.connect);
  if (opts.caPins.length) {
    // Only the CAs a pin names are trusted: during a rotation the auth server may serve from either.
    cas = cas.filter((ca) => matchesPin(ca, opts.caPins));
    if (!cas.length) {
      throw new AccessDeniedError(`the auth server at ${server.host}:${server.port} does not match the CA pin; refusing to send the join token`);
    }
  } else {
    opts.log.warn('joining without a CA pin: the auth server is not authenticated and a man in the middle could impersonate it; pass --ca-pin (see `tctl status`)', {
      auth_server: `${server.host}:${server.port}`,
    });
  }
  const client = new AuthClient({ servers: [server], ca: cas, ...(opts.connect ? { connect: opts.connect } : {}) });
  try {
    const packed = await client.post<PackedKeys>('/v1/tokens/register', {
      hostID: opts.hostUUID,
      node_name: opts.nodeName,
      role: opts.role,
      token: opts.token,
      additional_principals: opts.additionalPrincipals,
      dns_names: opts.dnsNames,
      public_tls_key: b64(publicKeyPem(keys.tls)),
      public_ssh_key: b64(formatAuthorizedKey(publicKeyBlob(keys.ssh.publicKey))),
    });
    const ping = await client.get<{ cluster_name: string }>('/v1/ping');
    return {
      role: opts.role,
      username: `${opts.hostUUID}.${ping.cluster_name}`,
      clusterName: ping.cluster_name,
      sshKey: keys.ssh.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      sshCert: unb64(packed.cert),
      tlsKey: keys.tls,
      tlsCert: unb64(packed.tls_cert),
      tlsCACerts: packed.tls_ca_certs.map(unb64),
      sshCACerts: packed.ssh_ca_certs.map(unb64),
    };
  } finally {
    client.close();
  }
}

/** Tries each auth server in turn; only connection problems move on to the next. */
export async function register(opts: RegisterOptions): Promise<Identity> {
  const keys = { ssh: generateKeyPair('ed25519'), tls: generateTlsKey() };
  let last: unknown;
  for (const server of opts.servers) {
    try {
      return await registerWith(server, opts, keys);
    } catch (err) {
      if (err instanceof TeleportError && err.reason !== 'connection_problem') throw err;
      last = err;
    }
  }
  throw last ?? new ConnectionProblemError('no auth server to join');
}
