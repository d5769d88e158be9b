/**
 * The node's SSH server (port 3022): presents the host certificate, accepts
 * only user certificates from the cluster's user CA for a login among their
 * principals, enforces the certificate's permissions, and serves sessions
 * and port forwarding. A malformed connection is closed on its own. A node
 * behind NAT does not listen: its connections come through a reverse tunnel
 * (serveStream). A connection from a proxy of this cluster that starts with
 * its signed `Teleport-Proxy` hello (proxy/hello.ts) is audited with the
 * client's address the hello names; any other with its TCP peer's.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { Connection, Server } from 'ssh2';
import { AccessDecision, accessFor, Permissions } from '../auth/access/decision';
import { Certificate, LoginNotInCertificateError, type SshAlgorithms, verifyUserCertAuth } from '../sshcert';
import { sshServer, type SshServerSettings } from '../service/sshserver';
import { logNegotiated } from '../sshcert/negotiated';
import { Logger } from '../utils/logger';
import { listen } from '../service/listen';
import { CERT_EXPIRED, whenCertExpires } from '../service/certexpiry';
import { ConnectionLimit } from '../service/connlimit';
import { PreAuthGate, type PreAuthLimits } from '../service/preauth';
import { AuditGate } from './auditgate';
import { serveForwarding } from './forwarding';
import { lookupUser, OsUser } from './osuser';
import { PamSettings } from './pam';
import { SessionDirectory } from './shared';
import { NodeSession, SessionRecording } from './session';
import { UserLimit } from '../utils/userlimit';
import type { ClusterConfig } from '../auth/server';
import { type Address, formatAddress, HelloVerifier, parseProxyHello } from '../proxy/hello';
import { HelloFront } from './hellofront';

export interface NodeServerOptions {
  listen: { host: string; port: number };
  /** SSH private key (PEM) and host certificate (authorized_keys line). */
  hostKey: string;
  hostCert: string;
  /** Key exchanges, ciphers and MACs offered (teleport.kex_algos / ciphers / mac_algos). */
  algorithms: SshAlgorithms;
  serverId: string;
  hostname: string;
  /** The cluster's name and host CA keys now: a `Teleport-Proxy` hello is believed from this cluster's proxies only. */
  clusterName: string;
  trustedHostCAs: () => Buffer[];
  /** The user CA keys to trust now, this cluster's and trusted clusters' (refreshed by the caller). */
  trustedUserCAs: () => Buffer[];
  /** The access decision for this node (access/decision.ts), from the current roles and users, for a verified certificate. */
  authorize(req: { cert: Certificate; login: string }): AccessDecision;
  labels: () => Record<string, string>;
  permitUserEnv: boolean;
  pam?: PamSettings;
  /** 0: never. */
  idleTimeoutMs: number;
  keepAliveIntervalMs: number;
  keepAliveCountMax: number;
  disconnectExpiredCert: boolean;
  /** Open connections at once (`connection_limits.max_connections`); one more is refused with a message. */
  maxConnections: number;
  /** Login grace time and startups limits on connections not yet authenticated. */
  preAuth: PreAuthLimits;
  /** Distinct cluster users with a connection at once (`connection_limits.max_users`). */
  maxUsers: number;
  /** Where audit events go (ssh_service.audit_failure decides whether a session runs when they cannot be recorded). */
  audit: AuditGate;
  /** `session_recording` as the auth server has it now, read when a connection logs in. */
  sessionRecording(): Promise<SessionRecordingMode>;
  /** Starts recording session `sid`; with a mode other than `node`, a recording that keeps nothing. */
  record(sid: string, mode: SessionRecordingMode): SessionRecording | Promise<SessionRecording>;
  /** The interactive sessions others may join, published to the auth server. @default not published */
  sessions?: SessionDirectory;
  /**
   * What is one per node when this server runs in a connection worker (node/connworker.ts): the
   * `max_users` count, the pre-authentication limits and the record of proxy hellos seen are the
   * primary process's. @default this server's own
   */
  nodeWide?: NodeWide;
  /**
   * Offered each connection accepted on the listener once it is admitted (`max_connections`, the
   * startups limits): true when another process (a connection worker) serves it from now on.
   * @default every connection is served here
   */
  handOff?: (sock: net.Socket) => boolean;
  log: Logger;
}

/** The state of the node as a whole that each connection consults: one per node, whichever process serves the connection. */
export interface NodeWide {
  /** Counts an authenticated connection of `user` against `max_users`: false when the limit is reached. */
  addUser(user: string): Promise<boolean>;
  /** A connection of `user` that `addUser` counted has closed. */
  removeUser(user: string): void;
  /** The connection from `remote` authenticated: it no longer counts as pending (startups, login grace time). */
  authenticated(remote: { ip: string; port: number }): void;
  /**
   * The client's address a proxy's hello (its JSON) names, when the hello is believed; undefined
   * when it is not (the connection is audited with its TCP peer's); throws when it is malformed.
   */
  believeHello(json: Buffer, local: { ip: string; port: number }): Address | undefined | Promise<Address | undefined>;
}

export const SSH_IDENT = 'Teleport';

export type SessionRecordingMode = ClusterConfig['session_recording'];

/** What the session may do: what the certificate permits and the user's roles still permit now. */
export function permitsOf(cert: Certificate, now: Permissions): Permissions {
  const e = cert.extensions;
  return {
    pty: 'permit-pty' in e && now.pty,
    portForwarding: 'permit-port-forwarding' in e && now.portForwarding,
    agentForwarding: 'permit-agent-forwarding' in e && now.agentForwarding,
    x11Forwarding: 'permit-X11-forwarding' in e && now.x11Forwarding,
  };
}

export class NodeServer implements NodeWide {
  private server: Server;
  private readonly tcp: net.Server;
  private readonly preAuth: PreAuthGate;
  private readonly connections: ConnectionLimit;
  private readonly clients = new Set<Connection>();
  /** Open authenticated connections per cluster user. */
  private readonly users: UserLimit;
  private readonly sessions: SessionDirectory;
  private readonly wide: NodeWide;
  private readonly hellos = new HelloVerifier();
  /** The client's address a believed hello named, by the TCP peer's (`ip|port`), while the connection is open. */
  private readonly clientOf = new Map<string, Address>();
  address?: { host: string; port: number };

  constructor(private readonly opts: NodeServerOptions) {
    this.users = new UserLimit(opts.maxUsers);
    this.sessions = opts.sessions ?? new SessionDirectory(undefined, opts.log);
    this.server = this.sshServer(opts.hostKey, opts.hostCert);
    this.preAuth = new PreAuthGate(opts.preAuth, opts.log);
    this.connections = new ConnectionLimit(opts.maxConnections, SSH_IDENT, opts.log);
    this.wide = opts.nodeWide ?? this;
    // Not read here until it is known who serves it: a socket handed to a worker must arrive there unread.
    this.tcp = net.createServer({ pauseOnConnect: true }, (sock) => {
      sock.on('error', (err) => opts.log.debug('connection error', { remote: sock.remoteAddress, error: err.message }));
      if (this.connections.admit(sock) && this.preAuth.admit(sock) && !opts.handOff?.(sock)) this.serve(sock);
    });
    this.tcp.on('error', (err) => opts.log.warn('ssh listener error', { error: err }));
  }

  /** ssh2's server for new connections, presenting this host key and certificate. */
  private sshServer(hostKey: string, hostCert: string): Server {
    const o = this.opts;
    const settings = { ident: SSH_IDENT, algorithms: o.algorithms, keepaliveInterval: o.keepAliveIntervalMs, keepaliveCountMax: o.keepAliveCountMax };
    return sshServer({ key: hostKey, cert: hostCert }, settings as SshServerSettings, (client, info) => this.onConnection(client, info), o.log);
  }

  /** Presents another host key and certificate (a host CA rotation) from the next connection on; open ones go on. */
  setHostKey(hostKey: string, hostCert: string): void {
    this.server = this.sshServer(hostKey, hostCert);
  }

  async listen(): Promise<{ host: string; port: number }> {
    await listen(this.tcp, this.opts.listen, 'node');
    const a = this.tcp.address() as net.AddressInfo;
    this.address = { host: this.opts.listen.host, port: a.port };
    return this.address;
  }

  /** Serves an accepted TCP connection (admitted already: by this server's listener, or by the primary process of a worker's). */
  serve(sock: net.Socket): void {
    this.server.injectSocket(this.front(sock) as unknown as net.Socket);
  }

  /**
   * The stream ssh2 reads: the socket without the proxy's hello, if one came; the client's address
   * it names is used when the hello is believed, else the connection goes on as the TCP peer's.
   */
  private front(sock: net.Socket): HelloFront {
    const peer = `${sock.remoteAddress}|${sock.remotePort}`;
    const from = { remote: sock.remoteAddress };
    sock.once('close', () => this.clientOf.delete(peer));
    const believed = (client: Address | undefined) => {
      if (client) this.clientOf.set(peer, client);
    };
    return new HelloFront(
      sock,
      (json) => {
        const client = this.wide.believeHello(json, { ip: sock.localAddress ?? '', port: sock.localPort ?? 0 });
        return client instanceof Promise ? client.then(believed) : believed(client);
      },
      (why) => this.opts.log.info('closing a connection with a malformed Teleport-Proxy hello', { ...from, error: why }),
    );
  }

  believeHello(json: Buffer, local: { ip: string; port: number }): Address | undefined {
    const { opts } = this;
    const hello = parseProxyHello(json);
    try {
      const client = this.hellos.verify(hello, { clusterName: opts.clusterName, hostCAs: opts.trustedHostCAs(), local });
      opts.log.debug('client address from the proxy', { client: formatAddress(client) });
      return client;
    } catch (err) {
      opts.log.warn('not believing a Teleport-Proxy hello; the connection is audited with its TCP peer address', { claimed: hello.clientAddr, error: (err as Error).message });
      return undefined;
    }
  }

  /** Connections accepted here that have not authenticated yet. */
  get pendingConnections(): number {
    return this.preAuth.pendingCount;
  }

  async addUser(user: string): Promise<boolean> {
    if (this.users.tryAdd(user)) return true;
    this.opts.log.warn('user limit reached, refusing a login', { user, max_users: this.opts.maxUsers });
    return false;
  }

  removeUser(user: string): void {
    this.users.remove(user);
  }

  authenticated(remote: { ip: string; port: number }): void {
    this.preAuth.authenticated(remote);
  }

  /**
   * Serves an SSH connection that came through a reverse tunnel (tunnel.ts)
   * exactly as one accepted on the listener: the same connection and
   * pre-authentication limits, authentication, authorization, recording and
   * audit. `from` is the client's address, as the proxy saw it.
   */
  serveStream(stream: Duplex, from: { ip: string; port: number }): void {
    const sock = Object.assign(stream, { remoteAddress: from.ip, remotePort: from.port, remoteFamily: net.isIP(from.ip) === 6 ? 'IPv6' : 'IPv4' }) as unknown as net.Socket;
    sock.on('error', (err) => this.opts.log.debug('tunnelled connection error', { remote: from.ip, error: err.message }));
    if (this.connections.admit(sock) && this.preAuth.admit(sock)) this.server.injectSocket(sock);
  }

  private onConnection(client: Connection, info: { ip: string; port: number }): void {
    const { opts } = this;
    const log = opts.log;
    const emit = opts.audit.emit.bind(opts.audit);
    this.clients.add(client);
    const believed = this.clientOf.get(`${info.ip}|${info.port}`);
    const remote = believed ? { addr: believed.ip, port: believed.port } : { addr: info.ip, port: info.port };
    const sock = (client as unknown as { _sock?: { localAddress?: string; localPort?: number } })._sock;
    const local = { addr: sock?.localAddress ?? opts.listen.host, port: sock?.localPort ?? this.address?.port ?? 0 };
    let cert: Certificate | undefined;
    let permit: Permissions | undefined;
    let osUser: OsUser | undefined;
    let recording: SessionRecordingMode = 'node';
    let login = '';
    let lastActivity = Date.now();
    const timers: NodeJS.Timeout[] = [];
    let stopForwarding = () => undefined as void;
    let stopExpiry = () => undefined as void;
    const where = `${remote.addr}:${remote.port}`;

    const disconnect = (reason: string) => {
      if (cert) emit({ event: 'client.disconnect', user: cert.keyId, login, reason, server_id: opts.serverId, 'addr.local': `${local.addr}:${local.port}`, 'addr.remote': where });
      client.end();
    };
    /** A refused attempt: audited with its reason; the reason is shown to the user when it is theirs to know. */
    const refuse = (reject: () => void, user: string, error: string, tell: boolean) => {
      emit({ event: 'auth', user, login, success: false, error, server_id: opts.serverId, 'addr.remote': where });
      log.info('authentication refused', { user, login, remote: remote.addr, error });
      if (tell) client.authBanner(error);
      reject();
    };

    client.on('error', (err) => log.debug('connection error', { remote: remote.addr, error: err.message }));
    logNegotiated(client, log, remote.addr);
    let closed = false;
    client.on('close', () => {
      closed = true;
      this.clients.delete(client);
      if (cert) this.wide.removeUser(cert.keyId);
      timers.forEach(clearTimeout);
      stopExpiry();
      stopForwarding();
    });

    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      login = ctx.username;
      const signed = !!(ctx as { signature?: Buffer }).signature;
      const reject = () => ctx.reject(['publickey']);
      let verified: Certificate;
      try {
        verified = verifyUserCertAuth(ctx, { trustedCAs: opts.trustedUserCAs() });
      } catch (err) {
        // Audited whether the key came with a signature or only as a probe: a refused probe is the last try with that key.
        return refuse(reject, login, (err as Error).message, err instanceof LoginNotInCertificateError);
      }
      if (!signed) return ctx.accept();
      const decision = opts.authorize({ cert: verified, login });
      if (!decision.allowed) return refuse(reject, verified.keyId, decision.reason, true);
      this.wide.addUser(verified.keyId).then(
        (counted) => {
          if (!counted) return refuse(reject, verified.keyId, 'too many users connected', false);
          Promise.all([lookupUser(login), opts.sessionRecording()]).then(
            ([u, mode]) => {
              // Closed meanwhile ('close' found nothing counted to release), or authenticated already.
              if (cert || closed) {
                this.wide.removeUser(verified.keyId);
                return reject();
              }
              cert = verified;
              permit = permitsOf(verified, accessFor(decision.user, decision.roles).permit);
              osUser = u;
              recording = mode;
              ctx.accept();
            },
            (err: Error) => {
              this.wide.removeUser(verified.keyId);
              refuse(reject, verified.keyId, err.message, false);
            },
          );
        },
        (err: Error) => refuse(reject, verified.keyId, err.message, false),
      );
    });

    client.on('ready', () => {
      this.wide.authenticated(info);
      const c = cert!;
      const u = osUser!;
      const touch = () => (lastActivity = Date.now());
      if (opts.idleTimeoutMs > 0) {
        const check = () => {
          const idle = Date.now() - lastActivity;
          if (idle >= opts.idleTimeoutMs) disconnect(`client is idle for ${Math.round(idle / 1000)}s, closing the connection`);
          else timers.push(setTimeout(check, opts.idleTimeoutMs - idle + 10));
        };
        timers.push(setTimeout(check, opts.idleTimeoutMs));
      }
      if (opts.disconnectExpiredCert) stopExpiry = whenCertExpires(c, () => disconnect(CERT_EXPIRED));
      const who = { user: c.keyId, login, server_id: opts.serverId, namespace: 'default' };
      stopForwarding = serveForwarding(client, { allowed: permit!.portForwarding, privileged: u.uid === 0, emit, who, touch, log });
      client.on('session', (accept, reject) => {
        touch();
        const session = accept();
        if (!session) return reject?.();
        new NodeSession(session, {
          user: c.keyId,
          login,
          osUser: u,
          permit: permit!,
          remoteAddr: remote.addr,
          remotePort: remote.port,
          localAddr: local.addr,
          localPort: local.port,
          serverId: opts.serverId,
          hostname: opts.hostname,
          labels: opts.labels,
          permitUserEnv: opts.permitUserEnv,
          ...(opts.pam ? { pam: opts.pam } : {}),
          audit: opts.audit,
          record: (sid) => opts.record(sid, recording),
          openAgentChannel: (cb) => client.openssh_authAgent((err, ch) => cb(err, ch)),
          touch,
          sessions: this.sessions,
          log,
        });
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.tcp.listening ? this.tcp.close(() => resolve()) : resolve()));
    this.preAuth.destroyPending();
    this.sessions.close();
    for (const c of this.clients) c.end();
    await closed;
  }
}
