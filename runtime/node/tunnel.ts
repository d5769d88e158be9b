/**
 * The node's reverse-tunnel agent (formats.md §4.5): keeps an SSH connection
 * to one proxy's tunnel listener, logged in with the node's host certificate,
 * and serves the channels the proxy opens over it with the node's own SSH
 * server (NodeServer.serveStream: the same authentication, authorization,
 * recording and audit as a TCP connection). The proxy must present a host
 * certificate from the cluster's host CA, with role Proxy, for the name the
 * agent dialled. SSH keepalives (TUNNEL_KEEPALIVE) notice a dead proxy; the
 * agent then reconnects with capped exponential backoff and jitter.
 *
 * One agent holds one tunnel; agentpool.ts runs one per proxy behind a load
 * balancer.
 */
import { createPrivateKey } from 'node:crypto';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { Client } from 'ssh2';
import { Identity } from '../auth/identity';
import { CLIENT_ALGORITHMS, clientCertIdentity, hostCertVerifier, parseCertificate } from '../sshcert';
import { dialTcp } from '../utils/httpconnect';
import { Logger } from '../utils/logger';
import { TUNNEL_BIND_ADDR, TUNNEL_BIND_PORT, TUNNEL_KEEPALIVE } from '../proxy/tunnel';
import type { HostPort } from '../proxy/resolve';
import { joinHostPort } from '../proxy/target';
import { CLUSTER_TUNNEL_BIND } from '../proxy/clusterchannel';

/** Reconnect delays: doubling from `minMs` up to `maxMs`, each drawn at random from its upper half. */
export const TUNNEL_BACKOFF = { minMs: 1_000, maxMs: 30_000 } as const;
/** How long a TCP connection to the proxy's tunnel port (or through the HTTP proxy) may take. */
const TUNNEL_DIAL_TIMEOUT_MS = 20_000;

/** The delay before reconnect attempt `attempt` (0 for the first after a loss). */
export function backoffMs(attempt: number, random: () => number = Math.random, b: { minMs: number; maxMs: number } = TUNNEL_BACKOFF): number {
  const cap = Math.min(b.maxMs, b.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

export interface TunnelAgentOptions {
  /** The proxy's tunnel address. */
  proxy: HostPort;
  /** The node's identity: host key and host certificate (the TLS half is not used here). */
  identity: Pick<Identity, 'username' | 'clusterName' | 'sshKey' | 'sshCert'>;
  /** The host CA keys the proxy's certificate must be signed by (asked before each connection). */
  hostCAKeys: () => Promise<Buffer[]>;
  /** Serves one SSH connection from `from` (the client's address, as the proxy saw it). */
  serve(stream: Duplex, from: { ip: string; port: number }): void;
  log: Logger;
  /**
   * Asked, once logged in, whether to keep a tunnel to the proxy whose host certificate names it `proxyId`
   * (`<uuid>.<cluster>`); false closes the connection and dials again soon (agentpool.ts). @default always
   */
  claim?: (proxyId: string) => boolean;
  /** Told when the tunnel to a claimed proxy is gone. */
  release?: (proxyId: string) => void;
  /** @default TUNNEL_KEEPALIVE */
  keepAlive?: { intervalMs: number; countMax: number };
  /**
   * The cluster whose proxy this is, when it is not the agent's own: a leaf proxy's tunnel to its
   * trusted (root) cluster, which forwards `CLUSTER_TUNNEL_BIND` instead of a node's. @default the identity's cluster
   */
  peerCluster?: string;
}

export class TunnelAgent {
  private client?: Client;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private attempt = 0;
  private up = false;
  private readonly where: string;

  constructor(private readonly opts: TunnelAgentOptions) {
    this.where = joinHostPort(opts.proxy.host, opts.proxy.port);
  }

  /** Whether the tunnel is up now. */
  get connected(): boolean {
    return this.up;
  }

  start(): void {
    void this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const { opts } = this;
    let trusted: Buffer[];
    try {
      trusted = await opts.hostCAKeys();
    } catch (err) {
      opts.log.warn('cannot get the host CA keys to check the proxy; retrying', { proxy: this.where, error: (err as Error).message });
      return this.retry();
    }
    if (this.stopped) return;
    // (through the environment's HTTP proxy when it names one: utils/httpconnect.ts)
    let sock: net.Socket;
    try {
      sock = await dialTcp(opts.proxy.host, opts.proxy.port, TUNNEL_DIAL_TIMEOUT_MS);
    } catch (err) {
      opts.log.warn('cannot open a reverse tunnel to the proxy; retrying', { proxy: this.where, error: (err as Error).message });
      return this.retry();
    }
    if (this.stopped) return void sock.destroy();
    const client = new Client();
    this.client = client;
    let denied: string | undefined;
    /** What ended the connection, for the warning (the proxy dropping it over its max_startups: "Connection lost before handshake"). */
    let failure: string | undefined;
    let proxyId: string | undefined;
    let claimed = false;
    const verify = hostCertVerifier({
      trustedCAs: trusted,
      hostname: opts.proxy.host,
      teleportRole: { role: 'Proxy', clusterName: opts.peerCluster ?? opts.identity.clusterName },
      onDenied: (err) => (denied = err.message),
    });
    client.on('ready', () => {
      if (opts.claim && !opts.claim(proxyId!)) {
        // Dialled again with the backoff, so that a proxy count that is too high (a heartbeat not yet expired) costs little.
        opts.log.debug('landed on a proxy that already has a tunnel; dialling again', { proxy: this.where, proxy_id: proxyId });
        client.end();
        return;
      }
      claimed = true;
      const bind = opts.peerCluster ? CLUSTER_TUNNEL_BIND : { addr: TUNNEL_BIND_ADDR, port: TUNNEL_BIND_PORT };
      client.forwardIn(bind.addr, bind.port, (err) => {
        if (err) {
          opts.log.warn('the proxy refused to serve this node through the tunnel', { proxy: this.where, error: err.message });
          client.end();
          return;
        }
        this.attempt = 0;
        this.up = true;
        opts.log.info('reverse tunnel to the proxy is up', { proxy: this.where, proxy_id: proxyId });
      });
    });
    client.on('tcp connection', (info, accept) => {
      const channel = accept();
      opts.serve(channel, { ip: info.srcIP, port: info.srcPort });
    });
    client.on('error', (err) => {
      // A keepalive timeout or a protocol error: ssh2 only half-closes, which a dead proxy never completes.
      opts.log.debug('reverse tunnel error', { proxy: this.where, error: err.message });
      failure ??= err.message;
      client.destroy();
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      if (claimed) opts.release?.(proxyId!);
      const error = denied ?? failure;
      if (this.up) opts.log.warn('reverse tunnel to the proxy is down; reconnecting', { proxy: this.where, proxy_id: proxyId, ...(failure ? { error: failure } : {}) });
      else if (!proxyId || claimed) opts.log.warn('cannot open a reverse tunnel to the proxy; retrying', { proxy: this.where, ...(error ? { error } : {}) });
      this.up = false;
      this.retry();
    });
    client.connect({
      sock,
      username: opts.identity.username,
      agent: clientCertIdentity(createPrivateKey(opts.identity.sshKey), opts.identity.sshCert, 'host'),
      algorithms: CLIENT_ALGORITHMS,
      hostVerifier: (key: Buffer) => {
        if (!verify(key)) return false;
        proxyId = parseCertificate(key).keyId;
        return true;
      },
      keepaliveInterval: (opts.keepAlive ?? TUNNEL_KEEPALIVE).intervalMs,
      keepaliveCountMax: (opts.keepAlive ?? TUNNEL_KEEPALIVE).countMax,
      readyTimeout: 20_000,
    } as Parameters<Client['connect']>[0]);
  }

  private retry(): void {
    if (this.stopped) return;
    const delay = backoffMs(this.attempt++);
    this.timer = setTimeout(() => void this.connect(), delay);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.client?.destroy();
  }
}
