/**
 * The proxy's SSH service (port 3023): presents the proxy's host certificate,
 * accepts only user certificates from the cluster's user CA for a login among
 * their principals, and serves one thing, the `proxy:host:port[@cluster]`
 * subsystem, which pipes the client's bytes to a node so that the SSH session
 * with the node is end to end. Shells, commands, port forwarding and other
 * channels are refused, as on Teleport's proxy. A malformed connection is
 * closed on its own. A registered node it dials directly first gets a signed
 * `Teleport-Proxy` hello with the client's address (hello.ts), so that its
 * audit events name the user's address rather than the proxy's.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import * as net from 'node:net';
import { type Connection, Server, type ServerChannel, type Session } from 'ssh2';
import { AuthClient } from '../auth/client';
import { Identity } from '../auth/identity';
import { AccessCache } from '../auth/access/cache';
import { AccessDecision, AccessRequest } from '../auth/access/decision';
import { completeEvent, EventFields } from '../events/filelog';
import { Server as ServerRecord, serverLabels } from '../auth/resources';
import { Ports } from '../contract/ports';
import { Certificate, certRoles, parseCertificate, verifyCertificate, DEFAULT_SSH_ALGORITHMS, EXT_TELEPORT_ROUTE_TO_CLUSTER, LoginNotInCertificateError, type SshAlgorithms, verifyUserCertAuth } from '../sshcert';
import { sshServer } from '../service/sshserver';
import { logNegotiated } from '../sshcert/negotiated';
import { AccessDeniedError, ConnectionProblemError, NotFoundError } from '../utils/errors';
import { Logger } from '../utils/logger';
import { listen } from '../service/listen';
import { CERT_EXPIRED, whenCertExpires } from '../service/certexpiry';
import { ConnectionLimit } from '../service/connlimit';
import { PreAuthGate, type PreAuthLimits } from '../service/preauth';
import { dial, dialFirst, failChannel, readGreeting, relay, TELEPORT_VERSION_PREFIX } from './relay';
import { signProxyHello } from './hello';
import type { LocalClients } from './localclients';
import { proxySessionsActive, proxySessionsStarted } from '../service/metrics';
import type { Cidr } from '../config/address';
import { Defaults } from '../config';
import { DEFAULT_MAX_STARTUPS } from '../config/startups';
import { DirectDialPolicy } from './direct';
import { HostPort, lookupIPs, NodeCache, resolveTarget } from './resolve';
import { AdmittedSockets } from './admitted';
import { joinHostPort, parseProxySubsystem, PROXY_SUBSYSTEM_PREFIX, type ProxyTarget } from './target';
import { ClusterDial, ClusterRequest, FRAME_TIMEOUT_MS, pipeBoth, requestOnChannel, writeFrame } from './clusterchannel';
import { UserLimit } from '../utils/userlimit';
import type { Duplex } from 'node:stream';
import type { TunnelRegistry } from './tunnel';
import type { ClusterConfig } from '../auth/server';
import type { ClusterSettings } from '../service/clustersettings';
import type { SessionSink } from '../events/sessionsink';
import type { ForwardingHostKeys } from './hostcerts';
import { serveForwarded } from './forward';

export const PROXY_SSH_IDENT = 'Teleport';

export interface ProxySshServiceOptions {
  readonly listen: HostPort;
  /** The proxy's identity (role Proxy): its host key and certificate are what clients see. */
  readonly identity: Identity;
  /** Key exchanges, ciphers and MACs offered (teleport.kex_algos / ciphers / mac_algos). @default DEFAULT_SSH_ALGORITHMS */
  readonly algorithms?: SshAlgorithms;
  /** Where `proxy:@cluster` leads: the auth servers, tried in turn. */
  readonly authServers: HostPort[];
  /** An auth client with the proxy's credentials: user CAs, the node list and audit events. */
  readonly authClient: AuthClient;
  readonly clusterName: string;
  readonly hostUUID: string;
  readonly log: Logger;
  /** Open connections at once; one more is refused with a message (service/connlimit.ts). @default 15000 */
  readonly maxConnections?: number;
  /** Distinct users with a connection at once (`connection_limits.max_users`). @default 250 */
  readonly maxUsers?: number;
  /** End a connection when its user certificate expires, audited as `client.disconnect` (`disconnect_expired_cert`). @default false */
  readonly disconnectExpiredCert?: boolean;
  /** SSH keepalives to clients; 0 turns them off. @default 300000 (5 minutes) */
  readonly keepAliveIntervalMs?: number;
  /** @default 3 */
  readonly keepAliveCountMax?: number;
  /** How long the node list is reused. @default 2000 */
  readonly nodeCacheTtlMs?: number;
  /**
   * Addresses outside the cluster's nodes that `proxy:host:port` may reach
   * (`proxy_service.direct_dial_cidrs`, e.g. OpenSSH servers that trust the
   * user CA). Anything else that is not a registered node is refused.
   * @default none
   */
  readonly directDialCidrs?: readonly Cidr[];
  /** Login grace time and startups limits on connections not yet authenticated. @default 30 s, 10:30:100 in all and per source */
  readonly preAuth?: PreAuthLimits;
  /** Time to connect to a node and read its version line. @default 15000 */
  readonly dialTimeoutMs?: number;
  /** Nodes' reverse tunnels: a node with a live tunnel is reached through it, else dialled. @default none */
  readonly tunnels?: TunnelRegistry;
  /** Leaf clusters' tunnels, by cluster name: `proxy:…@leaf` goes through them. @default none */
  readonly leaves?: TunnelRegistry;
  /** Connections this process opened to the listener for a browser terminal, with the browser's address. @default none */
  readonly localClients?: LocalClients;
  /** The users, roles, user CA and other clusters, loaded and kept current. @default one of its own */
  readonly access?: AccessCache;
  /** The cluster configuration, read as each connection arrives: `session_recording` and `proxy_checks_host_keys`. @default node recording */
  readonly settings?: ClusterSettings;
  /** What recording proxy mode needs: where sessions are audited and recorded, and host certificates for targets. @default recording mode refused */
  readonly recording?: { readonly sink: SessionSink; readonly hostKeys: ForwardingHostKeys };
}

export interface ProxySshService {
  readonly address: HostPort;
  /** Serves a channel the root cluster opened on this leaf proxy's tunnel (trusted clusters). */
  serveRootChannel(stream: Duplex, root: string, req: ClusterDial): Promise<void>;
  /** Presents another host key and certificate (a host CA rotation) from the next connection on. */
  setHostKey(hostKey: string, hostCert: string): void;
  close(): Promise<void>;
}

/** OpenSSH's MaxSessions default: session channels one connection may hold open. */
const MAX_SESSIONS_PER_CONNECTION = 10;
const DNS_TIMEOUT_MS = 2000;
/** A target not in the cached node list is looked for again in a list at most this old (a node that just joined). */
const MISS_REFRESH_MS = 250;
/** Requests refused with a message on stderr; others (pty, signals, agent) are refused quietly. */
const REFUSED_WITH_MESSAGE = ['shell', 'exec'] as const;
const REFUSED_QUIETLY = ['pty', 'x11', 'auth-agent', 'signal', 'window-change'] as const;

interface ConnectionContext {
  cert: Certificate;
  login: string;
  remote: HostPort;
}

/** A session channel on the proxy: whether the client forwarded its agent on it (recording mode only). */
interface SessionState {
  agent: boolean;
}

/**
 * ssh2 hands out a session's channel only once a request is accepted; a
 * refusal's reason goes on the still-open session channel's stderr (as
 * Teleport's proxy does) through ssh2's protocol object. Skipped quietly if
 * ssh2 no longer has that shape.
 */
function stderrBeforeAccept(client: Connection, session: Session, line: string): void {
  const proto = (client as unknown as { _protocol?: { channelExtData?: (id: number, data: Buffer, type: number) => void } })._protocol;
  const out = (session as unknown as { _chanInfo?: { outgoing?: { id: number; window: number; packetSize: number; state: string } } })._chanInfo?.outgoing;
  const data = Buffer.from(line + '\n');
  if (!proto?.channelExtData || !out || out.state !== 'open' || data.length > out.window || data.length > out.packetSize) return;
  out.window -= data.length;
  proto.channelExtData(out.id, data, 1 /* SSH_EXTENDED_DATA_STDERR */);
}

class ProxySshServer {
  private readonly tcp: net.Server;
  private readonly sockets: AdmittedSockets;
  private readonly nodes: NodeCache;
  private readonly users: UserLimit;
  private readonly preAuth: PreAuthGate;
  private readonly connections: ConnectionLimit;
  private readonly dialTimeoutMs: number;
  address?: HostPort;

  private readonly direct: DirectDialPolicy;
  /** The proxy's host key and certificate, which sign its `Teleport-Proxy` hellos. */
  private host: { key: KeyObject; cert: string };

  constructor(
    private readonly opts: ProxySshServiceOptions,
    private readonly access: AccessCache,
  ) {
    this.direct = new DirectDialPolicy(opts.directDialCidrs ?? []);
    this.host = { key: createPrivateKey(opts.identity.sshKey), cert: opts.identity.sshCert };
    this.preAuth = new PreAuthGate(
      opts.preAuth ?? { loginGraceMs: Defaults.proxyLoginGraceMs, maxStartups: DEFAULT_MAX_STARTUPS },
      opts.log,
    );
    this.users = new UserLimit(opts.maxUsers ?? 250);
    this.connections = new ConnectionLimit(opts.maxConnections ?? 15_000, PROXY_SSH_IDENT, opts.log);
    this.dialTimeoutMs = opts.dialTimeoutMs ?? 15_000;
    this.nodes = new NodeCache(
      (ns) => opts.authClient.get<ServerRecord[]>(`/v1/namespaces/${encodeURIComponent(ns)}/nodes`),
      opts.nodeCacheTtlMs ?? 2000,
      opts.log,
    );
    this.sockets = new AdmittedSockets(this.sshServer(), this.connections, this.preAuth, opts.log);
    this.tcp = net.createServer(this.sockets.admit);
    this.tcp.on('error', (err) => opts.log.warn('proxy ssh listener error', { error: err }));
  }

  private sshServer(): Server {
    const o = this.opts;
    const settings = { ident: PROXY_SSH_IDENT, algorithms: o.algorithms ?? DEFAULT_SSH_ALGORITHMS, keepaliveInterval: o.keepAliveIntervalMs ?? 300_000, keepaliveCountMax: o.keepAliveCountMax ?? 3 };
    return sshServer(this.host, settings, (client, info) => this.onConnection(client, { host: info.ip, port: info.port }), o.log);
  }

  /** Presents (and signs hellos with) another host key and certificate (a host CA rotation) from the next connection on. */
  setHostKey(hostKey: string, hostCert: string): void {
    this.host = { key: createPrivateKey(hostKey), cert: hostCert };
    this.sockets.ssh = this.sshServer();
  }

  async listen(): Promise<HostPort> {
    const { host } = this.opts.listen;
    await listen(this.tcp, this.opts.listen, 'proxySsh');
    this.address = { host, port: (this.tcp.address() as net.AddressInfo).port };
    return this.address;
  }

  private onConnection(client: Connection, peer: HostPort): void {
    const { opts } = this;
    const log = opts.log;
    const tcp = this.sockets.socketOf(joinHostPort(peer.host, peer.port));
    // The browser's address for a browser terminal's connection; the TCP peer's for any other.
    const remote = opts.localClients?.clientOf(peer) ?? peer;
    const where = joinHostPort(remote.host, remote.port);
    let ctx: ConnectionContext | undefined;

    client.on('error', (err) => log.debug('connection error', { remote: where, error: err.message }));
    logNegotiated(client, log, remote.host);
    let stopExpiry = () => undefined as void;
    client.on('close', () => {
      tcp?.destroy();
      stopExpiry();
      if (ctx) this.users.remove(ctx.cert.keyId);
    });
    client.on('authentication', (auth) => {
      if (auth.method !== 'publickey') return auth.reject(['publickey']);
      let cert: Certificate;
      try {
        cert = verifyUserCertAuth(auth, { trustedCAs: this.access.userCAKeys() });
      } catch (err) {
        const error = (err as Error).message;
        log.info('authentication refused', { login: auth.username, remote: remote.host, error });
        this.audit({ event: 'auth', user: auth.username, login: auth.username, success: false, error, server_id: opts.hostUUID, 'addr.remote': where });
        if (err instanceof LoginNotInCertificateError) client.authBanner(error);
        return auth.reject(['publickey']);
      }
      if (!auth.signature) return auth.accept();
      if (ctx || !this.users.tryAdd(cert.keyId)) {
        if (!ctx) {
          log.warn('user limit reached, refusing a login', { user: cert.keyId, max_users: this.users.max });
          this.audit({ event: 'auth', user: auth.username, success: false, error: 'too many users connected', server_id: opts.hostUUID, 'addr.remote': where });
        }
        return auth.reject(['publickey']);
      }
      ctx = { cert, login: auth.username, remote };
      auth.accept();
    });
    client.on('ready', () => {
      this.preAuth.authenticated({ ip: peer.host, port: peer.port });
      if (opts.disconnectExpiredCert) {
        const { cert, login } = ctx!;
        stopExpiry = whenCertExpires(cert, () => {
          const local = tcp ? joinHostPort(tcp.localAddress!, tcp.localPort!) : undefined;
          this.audit({ event: 'client.disconnect', user: cert.keyId, login, reason: CERT_EXPIRED, server_id: opts.hostUUID, ...(local ? { 'addr.local': local } : {}), 'addr.remote': where });
          client.end();
        });
      }
      let sessions = 0;
      // Read where the connection arrives: a change of session_recording applies to the next connection.
      const settings = opts.settings?.current();
      client.on('session', (accept, reject) => {
        if (sessions >= MAX_SESSIONS_PER_CONNECTION) return reject();
        sessions++;
        void (settings ?? Promise.resolve(undefined)).then((cfg) => {
          const session = accept();
          if (!session) return void sessions--;
          session.once('close', () => sessions--);
          this.serveSession(client, session, ctx!, cfg);
        });
      });
    });
  }

  private serveSession(client: Connection, session: Session, ctx: ConnectionContext, cfg: ClusterConfig | undefined): void {
    const log = this.opts.log;
    const recording = cfg?.session_recording === 'proxy';
    const state: SessionState = { agent: false };
    session.on('env', (accept) => accept?.());
    for (const type of REFUSED_WITH_MESSAGE) {
      session.on(type, (_accept: unknown, reject?: () => void) => {
        log.info('refused a request on the proxy', { type, user: ctx.cert.keyId, login: ctx.login });
        stderrBeforeAccept(client, session, `proxy doesn't support request type '${type}': ask for the proxy subsystem, e.g. ssh -p ${Ports.proxySsh} <login>@<proxy> -s proxy:<node>:<port>`);
        reject?.();
      });
    }
    for (const type of REFUSED_QUIETLY) session.on(type as 'pty', (_accept: unknown, reject?: () => void) => reject?.());
    // Recording mode: the agent forwarded on this session logs the user in to the target of this session's subsystem, and nothing else.
    if (recording) {
      session.removeAllListeners('auth-agent');
      session.on('auth-agent', (accept) => {
        state.agent = true;
        accept?.();
      });
    }
    session.on('subsystem', (accept, reject, info) => {
      if (!info.name.startsWith(PROXY_SUBSYSTEM_PREFIX)) {
        stderrBeforeAccept(client, session, `unsupported subsystem "${info.name.slice(0, 64)}": this proxy serves only ${PROXY_SUBSYSTEM_PREFIX}<host>:<port>[@<cluster>]`);
        return reject?.();
      }
      const channel = accept();
      if (!channel) return;
      const done = recording ? this.proxyRecorded(client, channel, info.name, ctx, state, cfg!) : this.proxy(channel, info.name, ctx);
      done.catch((err: Error) => {
        log.info('proxy subsystem failed', { subsystem: info.name.slice(0, 300), user: ctx.cert.keyId, login: ctx.login, error: err.message });
        failChannel(channel, err.message);
      });
    });
  }

  /** Resolves the request to a node (or a direct address) of this cluster or of a leaf cluster, dials it and relays. */
  private async proxy(channel: ServerChannel, request: string, ctx: ConnectionContext): Promise<void> {
    const { opts } = this;
    const target = parseProxySubsystem(request);
    const cluster = target.cluster || ctx.cert.extensions[EXT_TELEPORT_ROUTE_TO_CLUSTER] || opts.clusterName;
    if (cluster !== opts.clusterName) return this.proxyToLeaf(channel, request, target, cluster, ctx);
    if (!target.host) return this.proxyToAuth(channel, request, ctx);
    let closed = false;
    channel.once('close', () => (closed = true));
    const decide = (node: AccessRequest['node']) => this.access.check({ user: ctx.cert.keyId, certRoles: certRoles(ctx.cert.extensions), login: ctx.login, node });
    const conn = await this.connectTarget(target, request, ctx, decide, () => closed);
    if (!conn) return;
    proxySessionsStarted.inc();
    proxySessionsActive.inc();
    relay(channel, conn.sock, conn.head, conn.where, (err) => {
      proxySessionsActive.dec();
      opts.log.debug('proxy connection closed', { ...conn.fields, ...(err ? { error: err.message } : {}) });
    });
  }

  /**
   * Resolves a target of this cluster, decides access with `decide`, dials the node (through its
   * reverse tunnel when it has one) and reads its version line; undefined when the caller went away.
   */
  private async connectTarget(
    target: ProxyTarget,
    request: string,
    ctx: ConnectionContext,
    decide: (node: AccessRequest['node']) => AccessDecision,
    gone: () => boolean,
  ): Promise<{ sock: Duplex; head: Buffer; where: string; fields: Record<string, unknown>; node?: ServerRecord } | undefined> {
    const { opts } = this;
    const [listed, resolvedIPs] = await Promise.all([this.listNodes(target.namespace), lookupIPs(target.host, DNS_TIMEOUT_MS)]);
    const cachedRes = resolveTarget(target, listed, { clusterName: opts.clusterName, resolvedIPs });
    // No node by that name in the cached list: a node that joined since may be the one; look once more in a fresh list.
    const res = cachedRes.kind === 'direct' ? resolveTarget(target, await this.listNodes(target.namespace, MISS_REFRESH_MS), { clusterName: opts.clusterName, resolvedIPs }) : cachedRes;
    if (res.kind === 'direct') {
      const ip = this.direct.pick(target.host, resolvedIPs);
      if (!ip) {
        opts.log.info('refused to dial an address that is not a node', { target: request.slice(0, 300), user: ctx.cert.keyId, hint: 'proxy_service.direct_dial_cidrs allows addresses outside the cluster' });
        throw this.refuse(ctx, request, `access denied: "${target.host}" is not a node of cluster ${opts.clusterName}`);
      }
      res.addr = { host: ip, port: res.addr.port };
    }
    const node = res.kind === 'node' ? { name: res.node.spec.hostname, labels: serverLabels(res.node) } : { name: target.host, labels: {} };
    const decision = decide(node);
    if (!decision.allowed) throw this.refuse(ctx, request, decision.reason);
    const viaTunnel = res.kind === 'node' && (!res.addr || !!opts.tunnels?.has(res.node.metadata.name));
    const where = viaTunnel ? `reverse tunnel of ${res.node.metadata.name}` : joinHostPort(res.addr!.host, res.addr!.port);
    let sock: Duplex;
    try {
      if (res.kind === 'node' && viaTunnel) {
        if (!opts.tunnels?.has(res.node.metadata.name)) throw new ConnectionProblemError('it is reached only through a reverse tunnel, and none is connected to this proxy');
        sock = await opts.tunnels.dial(res.node.metadata.name, ctx.remote);
      } else sock = await dial(res.addr!, this.dialTimeoutMs);
    } catch (err) {
      if (res.kind === 'node') throw new ConnectionProblemError(`node ${res.node.spec.hostname} (${res.node.metadata.name}): ${(err as Error).message}`);
      throw new ConnectionProblemError(`host "${target.host}" is not a node of cluster ${opts.clusterName}, and ${(err as Error).message}`);
    }
    if (gone()) return void sock.destroy();
    const greeting = await readGreeting(sock, where, this.dialTimeoutMs);
    if (gone()) return void sock.destroy();
    // A registered node dialled directly learns the client's address from a signed hello (hello.ts); a node
    // behind a reverse tunnel learns it from the tunnel, and an address outside the cluster (OpenSSH) never gets one.
    if (res.kind === 'node' && !viaTunnel && greeting.versionLine?.startsWith(TELEPORT_VERSION_PREFIX)) {
      const tcp = sock as net.Socket;
      sock.write(signProxyHello({ key: this.host.key, certLine: this.host.cert }, { ip: ctx.remote.host, port: ctx.remote.port }, { ip: tcp.remoteAddress ?? '', port: tcp.remotePort ?? 0 }));
    }
    const fields = { user: ctx.cert.keyId, login: ctx.login, remote: ctx.remote.host, target: request, addr: where, ...(res.kind === 'node' ? { node: res.node.metadata.name } : { direct: true }), ...(viaTunnel ? { tunnel: true } : {}) };
    opts.log.info('proxying to node', fields);
    return { sock, head: greeting.head, where, fields, ...(res.kind === 'node' ? { node: res.node } : {}) };
  }

  /**
   * Recording proxy mode (forward.ts): the target of this cluster is reached as for a relay, after the
   * same access decision, but the SSH connection on the channel ends here and the proxy logs in to the
   * target with the user's forwarded agent, recording the session. Leaf clusters and `proxy:@cluster`
   * are relayed as always.
   */
  private async proxyRecorded(client: Connection, channel: ServerChannel, request: string, ctx: ConnectionContext, state: SessionState, cfg: ClusterConfig): Promise<void> {
    const { opts } = this;
    const target = parseProxySubsystem(request);
    const cluster = target.cluster || ctx.cert.extensions[EXT_TELEPORT_ROUTE_TO_CLUSTER] || opts.clusterName;
    if (cluster !== opts.clusterName || !target.host) return this.proxy(channel, request, ctx);
    const rec = opts.recording;
    if (!rec) throw new ConnectionProblemError('this proxy cannot record sessions (session_recording: proxy): it was started without a place to record them');
    let closed = false;
    channel.once('close', () => (closed = true));
    const decide = (node: AccessRequest['node']) => this.access.check({ user: ctx.cert.keyId, certRoles: certRoles(ctx.cert.extensions), login: ctx.login, node });
    const conn = await this.connectTarget(target, request, ctx, decide, () => closed);
    if (!conn) return;
    const node = conn.node;
    const names = [target.host, `${target.host}.${opts.clusterName}`, ...(node ? [node.metadata.name, node.spec.hostname, `${node.spec.hostname}.${opts.clusterName}`] : [])];
    let hostKey;
    try {
      hostKey = await rec.hostKeys.forNames(names);
    } catch (err) {
      conn.sock.destroy();
      throw new ConnectionProblemError(`recording proxy: cannot get a host certificate for ${target.host}: ${(err as Error).message}`);
    }
    if (closed) return void conn.sock.destroy();
    conn.sock.unshift(conn.head);
    proxySessionsStarted.inc();
    proxySessionsActive.inc();
    channel.once('close', () => proxySessionsActive.dec());
    opts.log.info('recording proxy: terminating the connection to the target', conn.fields);
    serveForwarded({
      channel,
      sock: conn.sock,
      target: {
        name: target.host,
        certNames: [target.host, ...(node ? [node.spec.hostname, node.metadata.name] : [])],
        addr: conn.where,
        hostname: node?.spec.hostname ?? target.host,
        labels: node ? serverLabels(node) : {},
      },
      serverId: opts.hostUUID,
      hostKey,
      algorithms: opts.algorithms ?? DEFAULT_SSH_ALGORITHMS,
      user: ctx.cert,
      remote: ctx.remote,
      // Asked for on the wire before the client's SSH bytes on this channel, so known by the time it logs in.
      agent: () => (state.agent ? (cb) => client.openssh_authAgent((err, ch) => cb(err, ch)) : undefined),
      trustedUserCAs: () => this.access.userCAKeys(),
      ...(cfg.proxy_checks_host_keys ? { trustedHostCAs: this.access.hostCAKeys() } : {}),
      authorize: (cert, login) => this.access.check({ user: cert.keyId, certRoles: certRoles(cert.extensions), login, node: node ? { name: node.spec.hostname, labels: serverLabels(node) } : { name: target.host, labels: {} } }),
      audit: rec.sink.audit,
      record: (sid) => rec.sink.record(sid, opts.hostUUID),
      readyTimeoutMs: this.dialTimeoutMs,
      log: opts.log.child('recording'),
    });
  }

  /**
   * `proxy:host:port@leaf` / `proxy:@leaf`: through the leaf cluster's reverse tunnel to its proxy,
   * which decides access by the leaf's rules (clusterchannel.ts) and pipes to the node or its auth.
   */
  private async proxyToLeaf(channel: ServerChannel, request: string, target: ProxyTarget, cluster: string, ctx: ConnectionContext): Promise<void> {
    const { opts } = this;
    if (!this.access.clusters('remote').some((c) => c.name === cluster)) {
      throw new NotFoundError(`cluster ${cluster} not found: it is neither ${opts.clusterName} nor a leaf cluster of it`);
    }
    if (!opts.leaves?.has(cluster)) throw new ConnectionProblemError(`cluster ${cluster} is offline: none of its proxies holds a reverse tunnel to this proxy`);
    let closed = false;
    channel.once('close', () => (closed = true));
    const stream = await opts.leaves.dial(cluster, ctx.remote);
    if (closed) return void stream.destroy();
    const req: ClusterRequest = target.host
      ? { type: 'node', host: target.host, port: target.port, namespace: target.namespace, cert: ctx.cert.blob.toString('base64'), login: ctx.login, client: ctx.remote }
      : { type: 'auth' };
    const rest = await requestOnChannel(stream, req, cluster, this.dialTimeoutMs + FRAME_TIMEOUT_MS);
    if (closed) return void stream.destroy();
    const fields = { user: ctx.cert.keyId, login: ctx.login, remote: ctx.remote.host, target: request, cluster };
    opts.log.info('proxying to a leaf cluster', fields);
    proxySessionsStarted.inc();
    proxySessionsActive.inc();
    relay(channel, stream, rest, `cluster ${cluster}`, (err) => {
      proxySessionsActive.dec();
      opts.log.debug('leaf cluster connection closed', { ...fields, ...(err ? { error: err.message } : {}) });
    });
  }

  /**
   * A channel the root cluster opened on this (leaf) proxy's tunnel to it: a root user's connection
   * to one of our nodes, or to our auth server. The user's certificate must be from the root's user
   * CA, list the login, and be valid now; access is decided here by our roles (role_map) as the node
   * will decide it again.
   */
  async serveRootChannel(stream: Duplex, root: string, req: ClusterDial): Promise<void> {
    const { opts } = this;
    const log = opts.log;
    const fail = (err: Error) => {
      log.info('refused a connection from the root cluster', { cluster: root, error: err.message });
      if (!stream.destroyed) {
        writeFrame(stream, { error: err.message.slice(0, 4000) });
        stream.end();
      }
    };
    try {
      const keys = this.access.clusters('trusted').find((c) => c.name === root)?.userCAKeys;
      if (!keys) throw new AccessDeniedError(`access denied: cluster "${root}" is not trusted by cluster ${opts.clusterName}`);
      if (req.type === 'auth') {
        const { sock, addr } = await dialFirst(opts.authServers, this.dialTimeoutMs);
        writeFrame(stream, { ok: true });
        log.debug('piping the root cluster to the auth server', { cluster: root, addr: joinHostPort(addr.host, addr.port) });
        return pipeBoth(stream, sock, Buffer.alloc(0), () => undefined);
      }
      let cert: Certificate;
      try {
        cert = parseCertificate(Buffer.from(req.cert, 'base64'));
        verifyCertificate(cert, { trustedCAs: keys, certType: 'user', principal: req.login });
      } catch (err) {
        throw new AccessDeniedError(`access denied: the certificate from cluster ${root} is not valid here: ${(err as Error).message}`);
      }
      const ctx: ConnectionContext = { cert, login: req.login, remote: req.client };
      const target: ProxyTarget = { host: req.host, port: req.port, namespace: req.namespace, cluster: opts.clusterName };
      const request = `proxy:${joinHostPort(req.host, req.port)}@${opts.clusterName}`;
      const conn = await this.connectTarget(target, request, ctx, (node) => this.access.checkCert(cert, req.login, node), () => stream.destroyed);
      if (!conn) return;
      writeFrame(stream, { ok: true });
      proxySessionsStarted.inc();
      proxySessionsActive.inc();
      pipeBoth(stream, conn.sock, conn.head, () => proxySessionsActive.dec());
    } catch (err) {
      fail(err as Error);
    }
  }

  /**
   * `proxy:@cluster`: a byte pipe to an auth server (the first of the list
   * that answers), over which `tsh` speaks mutual TLS with its own user
   * certificate; the auth server decides what that user may do.
   */
  private async proxyToAuth(channel: ServerChannel, request: string, ctx: ConnectionContext): Promise<void> {
    const { opts } = this;
    let closed = false;
    channel.once('close', () => (closed = true));
    let dialled: { sock: net.Socket; addr: HostPort };
    try {
      dialled = await dialFirst(opts.authServers, this.dialTimeoutMs);
    } catch (err) {
      throw new ConnectionProblemError(`cannot reach the auth server of cluster ${opts.clusterName}: ${(err as Error).message}`);
    }
    if (closed) return void dialled.sock.destroy();
    const where = joinHostPort(dialled.addr.host, dialled.addr.port);
    const fields = { user: ctx.cert.keyId, login: ctx.login, remote: ctx.remote.host, target: request, addr: where };
    opts.log.debug('proxying to the auth server', fields);
    relay(channel, dialled.sock, Buffer.alloc(0), where, (err) => opts.log.debug('auth connection closed', { ...fields, ...(err ? { error: err.message } : {}) }));
  }

  private async listNodes(namespace: string, maxAgeMs?: number): Promise<ServerRecord[]> {
    try {
      return await this.nodes.list(namespace, maxAgeMs);
    } catch (err) {
      throw new ConnectionProblemError(`cannot list the nodes of cluster ${this.opts.clusterName}: ${(err as Error).message}`);
    }
  }

  /** An audited refusal of a proxy request; its reason goes to the user on the channel's stderr. */
  private refuse(ctx: ConnectionContext, request: string, reason: string): AccessDeniedError {
    const where = joinHostPort(ctx.remote.host, ctx.remote.port);
    this.audit({ event: 'auth', user: ctx.cert.keyId, login: ctx.login, success: false, error: reason, target: request.slice(0, 300), server_id: this.opts.hostUUID, 'addr.remote': where });
    return new AccessDeniedError(reason);
  }

  /** Sent with its `uid` given here, so an event that reaches the audit log twice (a retry on another auth server) is stored once. */
  private audit(fields: EventFields): void {
    this.opts.authClient.post('/v1/events', completeEvent(fields)).catch((err: Error) => this.opts.log.warn('cannot send an audit event', { event: fields.event, error: err }));
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    this.sockets.destroyAll();
    await closed;
  }
}

/** Starts the proxy's SSH listener once the users, roles and user CA are loaded; they are kept current in the background. */
export async function startProxySshService(opts: ProxySshServiceOptions): Promise<ProxySshService> {
  const own = opts.access ? undefined : new AccessCache(opts.authClient, opts.log.child('access'));
  await own?.start();
  const access = opts.access ?? own!;
  const server = new ProxySshServer(opts, access);
  let address: HostPort;
  try {
    address = await server.listen();
  } catch (err) {
    own?.stop();
    throw err;
  }
  opts.log.info('proxy ssh service is listening', { addr: joinHostPort(address.host, address.port), host_uuid: opts.hostUUID });
  return {
    address,
    serveRootChannel: (stream, root, req) => server.serveRootChannel(stream, root, req),
    setHostKey: (key, cert) => server.setHostKey(key, cert),
    close: async () => {
      own?.stop();
      await server.close();
    },
  };
}
