/**
 * The proxy's reverse-tunnel server (`proxy_service.tunnel_listen_addr`,
 * 3024): nodes that cannot be dialled (behind NAT) dial in here and the proxy
 * reaches them back over that connection (formats.md §4.5).
 *
 * It is an SSH server. An agent logs in with its host certificate: signed by
 * the cluster's host CA, a host certificate, valid now, listing the login
 * (`<host uuid>.<cluster>`) as a principal and carrying role `Node` and this
 * cluster as its authority. Anything else is refused and the reason logged.
 * The agent then asks for a remote forward (`tcpip-forward` of
 * TUNNEL_BIND_ADDR:TUNNEL_BIND_PORT): that declares it ready, and the tunnel
 * joins the registry under the host's UUID. The proxy reaches the node by
 * opening a `forwarded-tcpip` channel whose originator is the SSH client's
 * address; the node runs its own SSH server on that channel. Sessions, other
 * channels and other requests are refused. Both ends send SSH keepalives
 * (TUNNEL_KEEPALIVE, TUNNEL_PROXY_KEEPALIVE), so a dead tunnel leaves the
 * registry within 45 s.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { type Connection, Server } from 'ssh2';
import { Identity } from '../auth/identity';
import { DEFAULT_SSH_ALGORITHMS, type SshAlgorithms, verifyHostCertAuth } from '../sshcert';
import { sshServer } from '../service/sshserver';
import { logNegotiated } from '../sshcert/negotiated';
import { ConnectionProblemError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { listen } from '../service/listen';
import { ConnectionLimit } from '../service/connlimit';
import { PreAuthGate, type PreAuthLimits } from '../service/preauth';
import { HostPort } from './resolve';
import { AdmittedSockets } from './admitted';
import { joinHostPort } from './target';
import { CLUSTER_TUNNEL_BIND, writeFrame } from './clusterchannel';

/** What an agent asks the proxy to forward: "connections for this node". */
export const TUNNEL_BIND_ADDR = 'teleport-node';
export const TUNNEL_BIND_PORT = 3022;
/** The agent's SSH keepalives: one every `intervalMs`; `countMax` unanswered in a row close the tunnel (a dead proxy is noticed within 40 s). */
export const TUNNEL_KEEPALIVE = { intervalMs: 10_000, countMax: 3 } as const;
/**
 * The proxy's: one after `intervalMs` without a packet from the agent, longer than the agent's interval so
 * that a live agent's own keepalives keep the proxy quiet (with equal timers both ends send one every
 * interval, twice the idle traffic); `countMax` unanswered close the tunnel (a dead agent is noticed within 45 s).
 */
export const TUNNEL_PROXY_KEEPALIVE = { intervalMs: 15_000, countMax: 2 } as const;
export const TUNNEL_SSH_IDENT = 'Teleport';

/**
 * The live tunnels, by host UUID (nodes) or by cluster name (leaf clusters' proxies); the newest of
 * a key's tunnels is tried first. `bind` is what the agents forward.
 */
export class TunnelRegistry {
  private readonly tunnels = new Map<string, Connection[]>();

  constructor(
    private readonly bind: { addr: string; port: number } = { addr: TUNNEL_BIND_ADDR, port: TUNNEL_BIND_PORT },
    /** What the keys are, for messages. */
    private readonly what: 'host' | 'cluster' = 'host',
  ) {}

  add(hostId: string, conn: Connection): void {
    this.tunnels.set(hostId, [...(this.tunnels.get(hostId) ?? []), conn]);
  }

  remove(hostId: string, conn: Connection): void {
    const left = (this.tunnels.get(hostId) ?? []).filter((c) => c !== conn);
    if (left.length) this.tunnels.set(hostId, left);
    else this.tunnels.delete(hostId);
  }

  has(hostId: string): boolean {
    return this.tunnels.has(hostId);
  }

  get size(): number {
    return this.tunnels.size;
  }

  keys(): string[] {
    return [...this.tunnels.keys()];
  }

  /** The live connections of `id`. */
  connections(id: string): readonly Connection[] {
    return this.tunnels.get(id) ?? [];
  }

  /** Ends every tunnel of `id` (a leaf whose trust was removed). */
  closeAll(id: string): void {
    for (const conn of this.tunnels.get(id) ?? []) conn.end();
  }

  /** A byte stream to the node's SSH server through its tunnel; `from` is the SSH client's address, which the node audits. */
  async dial(hostId: string, from: HostPort): Promise<Duplex> {
    let last: Error | undefined;
    for (const conn of [...(this.tunnels.get(hostId) ?? [])].reverse()) {
      try {
        return await new Promise<Duplex>((resolve, reject) =>
          conn.forwardOut(this.bind.addr, this.bind.port, from.host, from.port, (err, channel) => (err ? reject(err) : resolve(channel))),
        );
      } catch (err) {
        last = err as Error;
      }
    }
    throw new ConnectionProblemError(`no reverse tunnel to ${this.what} ${hostId} answers${last ? `: ${last.message}` : ''}`);
  }
}

export interface TunnelServerOptions {
  listen: HostPort;
  /** The proxy's identity: its host certificate is what agents check. */
  identity: Identity;
  algorithms?: SshAlgorithms;
  clusterName: string;
  /** The host CA keys to trust now (kept current by the caller). */
  hostCAKeys: () => Buffer[];
  registry: TunnelRegistry;
  preAuth: PreAuthLimits;
  maxConnections: number;
  log: Logger;
  /** @default TUNNEL_PROXY_KEEPALIVE */
  keepAlive?: { intervalMs: number; countMax: number };
  /** Leaf clusters (trusted clusters whose root this is): their proxies' tunnels. @default none accepted */
  leaves?: LeafTunnels;
}

/** How the tunnel server takes the proxies of leaf clusters. */
export interface LeafTunnels {
  /** The host CA keys of leaf cluster `name`; undefined when it is no (enabled) remote cluster. */
  hostCAKeys(name: string): Buffer[] | undefined;
  /** By leaf cluster name. */
  registry: TunnelRegistry;
  /** How many proxies this cluster has, told to each leaf tunnel so the leaf keeps one to each. */
  proxyCount(): number;
  /** A leaf's tunnel to this proxy came up, or its last one went down. */
  onChange(cluster: string, up: boolean): void;
}

export class TunnelServer {
  private readonly tcp: net.Server;
  private readonly preAuth: PreAuthGate;
  private readonly connections: ConnectionLimit;
  /** The raw sockets by remote address: an SSH connection that failed (a keepalive timeout) is torn down at once. */
  private readonly sockets: AdmittedSockets;
  address?: HostPort;

  constructor(private readonly opts: TunnelServerOptions) {
    this.preAuth = new PreAuthGate(opts.preAuth, opts.log);
    this.connections = new ConnectionLimit(opts.maxConnections, TUNNEL_SSH_IDENT, opts.log);
    this.sockets = new AdmittedSockets(this.sshServer(opts.identity.sshKey, opts.identity.sshCert), this.connections, this.preAuth, opts.log);
    this.tcp = net.createServer(this.sockets.admit);
    this.tcp.on('error', (err) => opts.log.warn('tunnel listener error', { error: err }));
  }

  private sshServer(hostKey: string, hostCert: string): Server {
    const keepAlive = this.opts.keepAlive ?? TUNNEL_PROXY_KEEPALIVE;
    const settings = { ident: TUNNEL_SSH_IDENT, algorithms: this.opts.algorithms ?? DEFAULT_SSH_ALGORITHMS, keepaliveInterval: keepAlive.intervalMs, keepaliveCountMax: keepAlive.countMax };
    return sshServer({ key: hostKey, cert: hostCert }, settings, (client, info) => this.onConnection(client, { host: info.ip, port: info.port }), this.opts.log);
  }

  /** Presents another host key and certificate (a host CA rotation) from the next connection on; open tunnels go on. */
  setHostKey(hostKey: string, hostCert: string): void {
    this.sockets.ssh = this.sshServer(hostKey, hostCert);
  }

  async listen(): Promise<HostPort> {
    await listen(this.tcp, this.opts.listen, 'proxyTunnel');
    this.address = { host: this.opts.listen.host, port: (this.tcp.address() as net.AddressInfo).port };
    return this.address;
  }

  private onConnection(client: Connection, remote: HostPort): void {
    const { opts } = this;
    const log = opts.log;
    const where = joinHostPort(remote.host, remote.port);
    let hostId: string | undefined;
    /** Set for a leaf cluster's proxy: the leaf's name. */
    let leaf: string | undefined;
    let registered = false;
    const sock = this.sockets.socketOf(where);
    client.on('error', (err) => {
      // A keepalive timeout or a protocol error: ssh2 only half-closes, which a dead peer never completes.
      log.info('reverse tunnel failed', { ...(hostId ? { host_uuid: hostId } : {}), remote: where, error: err.message });
      sock?.destroy();
    });
    logNegotiated(client, log, remote.host);
    client.on('close', () => {
      sock?.destroy();
      if (leaf && registered && opts.leaves) {
        opts.leaves.registry.remove(leaf, client);
        if (!opts.leaves.registry.has(leaf)) opts.leaves.onChange(leaf, false);
        log.info('reverse tunnel from a leaf cluster closed', { cluster: leaf, remote: where });
      } else if (hostId && registered) {
        opts.registry.remove(hostId, client);
        log.info('reverse tunnel closed', { host_uuid: hostId, remote: where });
      }
    });
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      try {
        // `<host uuid>.<cluster>`: a node of this cluster, or a proxy of a leaf cluster.
        const dot = ctx.username.indexOf('.');
        const cluster = dot > 0 ? ctx.username.slice(dot + 1) : opts.clusterName;
        const leafKeys = cluster !== opts.clusterName ? opts.leaves?.hostCAKeys(cluster) : undefined;
        if (cluster !== opts.clusterName && !leafKeys) throw new Error(`"${cluster}" is neither this cluster (${opts.clusterName}) nor a leaf cluster of it`);
        const cert = leafKeys
          ? verifyHostCertAuth(ctx, { trustedCAs: leafKeys, role: 'Proxy', clusterName: cluster })
          : verifyHostCertAuth(ctx, { trustedCAs: opts.hostCAKeys(), role: 'Node', clusterName: opts.clusterName });
        if (cert.keyId !== ctx.username) throw new Error(`certificate "${cert.keyId}" does not name host "${ctx.username}"`);
        if (ctx.signature) {
          hostId = cert.keyId.slice(0, dot);
          if (leafKeys) leaf = cluster;
        }
      } catch (err) {
        log.warn('refused a reverse tunnel agent', { remote: where, login: ctx.username.slice(0, 200), error: (err as Error).message });
        return ctx.reject(['publickey']);
      }
      ctx.accept();
    });
    client.on('ready', () => {
      this.preAuth.authenticated({ ip: remote.host, port: remote.port });
      const id = hostId!;
      const want = leaf ? CLUSTER_TUNNEL_BIND : { addr: TUNNEL_BIND_ADDR, port: TUNNEL_BIND_PORT };
      client.on('request', (accept, reject, name, info) => {
        const bind = info as { bindAddr?: string; bindPort?: number };
        if (name !== 'tcpip-forward' || bind.bindAddr !== want.addr || bind.bindPort !== want.port || registered) {
          log.info('refused a request on a reverse tunnel', { host_uuid: id, ...(leaf ? { cluster: leaf } : {}), request: name });
          return reject?.();
        }
        registered = true;
        accept?.();
        if (leaf && opts.leaves) {
          const first = !opts.leaves.registry.has(leaf);
          opts.leaves.registry.add(leaf, client);
          if (first) opts.leaves.onChange(leaf, true);
          log.info('reverse tunnel from a leaf cluster established', { cluster: leaf, proxy: id, remote: where });
          this.tellProxyCount(client, leaf);
        } else {
          opts.registry.add(id, client);
          log.info('reverse tunnel established', { host_uuid: id, remote: where });
        }
      });
      client.on('session', (_accept, reject) => {
        log.info('refused a session on a reverse tunnel', { host_uuid: id });
        reject();
      });
    });
  }

  /** Tells every leaf tunnel how many proxies this cluster has now (the count may have changed). */
  announceProxyCount(): void {
    const leaves = this.opts.leaves;
    if (!leaves) return;
    for (const leaf of leaves.registry.keys()) for (const conn of leaves.registry.connections(leaf)) this.tellProxyCount(conn, leaf);
  }

  /** Tells a leaf's proxy how many proxies this cluster has (clusterchannel.ts `discovery`). */
  private tellProxyCount(client: Connection, leaf: string): void {
    const proxies = Math.max(1, Math.min(1000, this.opts.leaves?.proxyCount() ?? 1));
    client.forwardOut(CLUSTER_TUNNEL_BIND.addr, CLUSTER_TUNNEL_BIND.port, '0.0.0.0', 0, (err, channel) => {
      if (err) return this.opts.log.debug('cannot tell a leaf cluster the proxy count', { cluster: leaf, error: err.message });
      writeFrame(channel, { type: 'discovery', proxies });
      channel.end();
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    this.sockets.destroyAll();
    await closed;
  }
}
