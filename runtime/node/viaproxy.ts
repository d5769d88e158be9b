/**
 * Nodes behind NAT (Teleport 4.x: `auth_servers: [proxy:3080]`): a node
 * whose auth server address is a proxy's web port joins and talks to auth
 * through the proxy (proxy/authpipe.ts) and is served through a reverse
 * tunnel to the proxy (tunnel.ts), with no inbound port. An address is a
 * proxy's web port when its `GET /webapi/ping` answers as one; the answer
 * also names the tunnel address: `ssh_tunnel_public_addr` when the proxy
 * sets `tunnel_public_addr`, else the host the node dialled with the port of
 * `tunnel_listen_addr`. The ping's TLS certificate is not checked: a forged
 * answer can only send the node to an address where it then verifies auth
 * against the CA pin, and the proxy against the cluster's host CA.
 */
import * as https from 'node:https';
import type * as tls from 'node:tls';
import type { AuthClientOptions } from '../auth/client';
import { connectAuthPipe } from '../proxy/authpipe';
import { formatAddr, parseAddr } from '../config/address';
import { ConnectionProblemError } from '../utils/errors';
import { dialTls } from '../utils/httpconnect';
import { HostPort } from '../proxy/resolve';
import { Ports } from '../contract/ports';
import type { PingResponse } from '../proxy/web';

export interface ProxyRoute {
  /** The proxy's web address, as configured in auth_servers. */
  web: HostPort;
  /** Where the node dials its reverse tunnel. */
  tunnel: HostPort;
}

const PING_TIMEOUT_MS = 5_000;
const PIPE_TIMEOUT_MS = 15_000;

/** The auth client's `connect` for a node behind NAT: each connection to auth is a pipe through the proxy's web port. */
export function authPipe(route: ProxyRoute): NonNullable<AuthClientOptions['connect']> {
  return () => connectAuthPipe(route.web, PIPE_TIMEOUT_MS);
}
const MAX_PING_BYTES = 64 * 1024;

async function ping(web: HostPort): Promise<PingResponse | undefined> {
  let sock: tls.TLSSocket;
  try {
    sock = await dialTls(web.host, web.port, PING_TIMEOUT_MS, { rejectUnauthorized: false });
  } catch {
    return undefined;
  }
  return new Promise<PingResponse | undefined>((resolve) => {
    const req = https.get({ host: web.host, port: web.port, path: '/webapi/ping', createConnection: () => sock, timeout: PING_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_PING_BYTES) req.destroy();
        else chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve(undefined);
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString()) as PingResponse);
        } catch {
          resolve(undefined);
        }
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  }).finally(() => sock.destroy());
}

/** The route through the first of `servers` that is a proxy's web port; undefined when none is (they are auth servers). */
export async function discoverProxy(servers: HostPort[]): Promise<ProxyRoute | undefined> {
  for (const web of servers) {
    const answer = await ping(web);
    const ssh = answer?.proxy?.ssh;
    if (typeof ssh?.tunnel_listen_addr !== 'string') continue;
    try {
      const published = ssh.ssh_tunnel_public_addr ? parseAddr(ssh.ssh_tunnel_public_addr, Ports.proxyTunnel) : undefined;
      return { web, tunnel: published ?? { host: web.host, port: parseAddr(ssh.tunnel_listen_addr, Ports.proxyTunnel).port } };
    } catch (err) {
      throw new ConnectionProblemError(`the proxy at ${formatAddr(web)} announced a tunnel address that does not parse: ${(err as Error).message}`);
    }
  }
  return undefined;
}
