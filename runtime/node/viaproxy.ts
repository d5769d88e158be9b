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
import type { Logger } from '../utils/logger';
import { backoffMs, TUNNEL_BACKOFF } from './tunnel';
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

/** What an address in auth_servers said to `GET /webapi/ping`. */
type Answer = { kind: 'answered'; ping?: PingResponse } | { kind: 'silent'; error: string };

/** A TLS failure after the TCP connection was made: the address answers, but not with TLS (so it is no proxy web port). */
const notTls = (err: NodeJS.ErrnoException) => err.code === 'EPROTO' || (err.code ?? '').startsWith('ERR_SSL');

/**
 * Asks `web` for its ping. An HTTP answer (with the ping when it is 200 and JSON) or a peer that
 * does not speak TLS is an answer; no connection, a reset or a timeout is silence.
 */
async function ping(web: HostPort): Promise<Answer> {
  let sock: tls.TLSSocket;
  try {
    sock = await dialTls(web.host, web.port, PING_TIMEOUT_MS, { rejectUnauthorized: false });
  } catch (err) {
    return { kind: 'silent', error: (err as Error).message };
  }
  return new Promise<Answer>((resolve) => {
    const req = https.get({ host: web.host, port: web.port, path: '/webapi/ping', createConnection: () => sock, timeout: PING_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_PING_BYTES) return void chunks.push(c);
        resolve({ kind: 'answered' }); // (no proxy's ping is this long)
        req.destroy();
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve({ kind: 'answered' });
        try {
          resolve({ kind: 'answered', ping: JSON.parse(Buffer.concat(chunks).toString()) as PingResponse });
        } catch {
          resolve({ kind: 'answered' });
        }
      });
      res.on('error', () => resolve({ kind: 'answered' }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${PING_TIMEOUT_MS / 1000}s`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(notTls(err) ? { kind: 'answered' } : { kind: 'silent', error: err.message }));
  }).finally(() => sock.destroy());
}

/** The route through `web` when its ping answers as a proxy's (it names a tunnel address). */
function routeOf(web: HostPort, answer: PingResponse | undefined): ProxyRoute | undefined {
  const ssh = answer?.proxy?.ssh;
  if (typeof ssh?.tunnel_listen_addr !== 'string') return undefined;
  try {
    const published = ssh.ssh_tunnel_public_addr ? parseAddr(ssh.ssh_tunnel_public_addr, Ports.proxyTunnel) : undefined;
    return { web, tunnel: published ?? { host: web.host, port: parseAddr(ssh.tunnel_listen_addr, Ports.proxyTunnel).port } };
  } catch (err) {
    throw new ConnectionProblemError(`the proxy at ${formatAddr(web)} announced a tunnel address that does not parse: ${(err as Error).message}`);
  }
}

export interface DiscoverOptions {
  log: Logger;
  /** Stops the waiting (the process is asked to stop while it starts). */
  signal?: AbortSignal;
  /** Delays between rounds while no address answers. @default TUNNEL_BACKOFF */
  backoff?: { minMs: number; maxMs: number };
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () => {
      clearTimeout(timer);
      reject(new ConnectionProblemError('stopped while waiting for auth_servers to answer'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    if (signal?.aborted) aborted();
    else signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * The route through the first of `servers` that is a proxy's web port; undefined when none is
 * but one answered (they are auth servers). While none answers (a proxy or auth server not up
 * yet, the network down), it asks again with backoff (TUNNEL_BACKOFF), logging why, until one
 * does or `signal` aborts: an address that is silent cannot be told to be an auth server's.
 */
export async function discoverProxy(servers: HostPort[], opts: DiscoverOptions): Promise<ProxyRoute | undefined> {
  for (let attempt = 0; ; attempt++) {
    const silent: string[] = [];
    let answered = false;
    for (const web of servers) {
      if (opts.signal?.aborted) break;
      const answer = await ping(web);
      if (answer.kind === 'silent') {
        silent.push(`${formatAddr(web)}: ${answer.error}`);
        continue;
      }
      const route = routeOf(web, answer.ping);
      if (route) return route;
      answered = true;
    }
    if (answered) return undefined;
    const delay = backoffMs(attempt, Math.random, opts.backoff ?? TUNNEL_BACKOFF);
    if (!opts.signal?.aborted) opts.log.warn('no address in auth_servers answers yet (a proxy or an auth server); retrying', { errors: silent, retry_in_ms: delay });
    await pause(delay, opts.signal);
  }
}
