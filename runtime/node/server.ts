/**
 * The node's SSH server (port 3022): presents the host certificate, accepts
 * only user certificates from the cluster's user CA for a login among their
 * principals, enforces the certificate's permissions, and serves sessions
 * and port forwarding. A malformed connection is closed on its own.
 */
import { createPrivateKey } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { Connection, Server } from 'ssh2';
import { EventFields } from '../events/filelog';
import { Certificate, hostKeyWithCertificate, serverAlgorithms, type SshAlgorithms, verifyUserCertAuth } from '../sshcert';
import { logNegotiated } from '../sshcert/negotiated';
import { Logger } from '../utils/logger';
import { serveForwarding } from './forwarding';
import { lookupUser, OsUser } from './osuser';
import { PamSettings } from './pam';
import { NodeSession, SessionRecording } from './session';
import { UserLimit } from '../utils/userlimit';

export interface NodeServerOptions {
  listen: { host: string; port: number };
  /** SSH private key (PEM) and host certificate (authorized_keys line). */
  hostKey: string;
  hostCert: string;
  /** Key exchanges, ciphers and MACs offered (teleport.kex_algos / ciphers / mac_algos). */
  algorithms: SshAlgorithms;
  serverId: string;
  hostname: string;
  /** The user CA keys to trust now (refreshed by the caller). */
  trustedUserCAs: () => Buffer[];
  labels: () => Record<string, string>;
  permitUserEnv: boolean;
  pam?: PamSettings;
  /** 0: never. */
  idleTimeoutMs: number;
  keepAliveIntervalMs: number;
  keepAliveCountMax: number;
  disconnectExpiredCert: boolean;
  maxConnections: number;
  /** Distinct cluster users with a connection at once (`connection_limits.max_users`). */
  maxUsers: number;
  emit(fields: EventFields): void;
  record(sid: string): SessionRecording;
  log: Logger;
}

export const SSH_IDENT = 'Teleport';

function permitsOf(cert: Certificate) {
  const e = cert.extensions;
  return {
    pty: 'permit-pty' in e,
    portForwarding: 'permit-port-forwarding' in e,
    agentForwarding: 'permit-agent-forwarding' in e,
    x11Forwarding: 'permit-X11-forwarding' in e,
  };
}

export class NodeServer {
  private readonly server: Server;
  private readonly clients = new Set<Connection>();
  /** Open authenticated connections per cluster user. */
  private readonly users: UserLimit;
  address?: { host: string; port: number };

  constructor(private readonly opts: NodeServerOptions) {
    this.users = new UserLimit(opts.maxUsers);
    this.server = new Server(
      {
        hostKeys: [hostKeyWithCertificate(createPrivateKey(opts.hostKey), opts.hostCert)],
        ident: SSH_IDENT,
        algorithms: serverAlgorithms(opts.algorithms),
        keepaliveInterval: opts.keepAliveIntervalMs,
        keepaliveCountMax: opts.keepAliveCountMax,
      } as ConstructorParameters<typeof Server>[0],
      (client, info) => this.onConnection(client, info),
    );
    this.server.on('error', (err: Error) => opts.log.warn('ssh server error', { error: err }));
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    this.address = { host: this.opts.listen.host, port: a.port };
    return this.address;
  }

  private onConnection(client: Connection, info: { ip: string; port: number }): void {
    const { opts } = this;
    const log = opts.log;
    if (this.clients.size >= opts.maxConnections) {
      log.warn('connection limit reached, refusing a connection', { remote: info.ip });
      client.end();
      return;
    }
    this.clients.add(client);
    const remote = { addr: info.ip, port: info.port };
    const sock = (client as unknown as { _sock?: { localAddress?: string; localPort?: number } })._sock;
    const local = { addr: sock?.localAddress ?? opts.listen.host, port: sock?.localPort ?? this.address?.port ?? 0 };
    let cert: Certificate | undefined;
    let osUser: OsUser | undefined;
    let login = '';
    let lastActivity = Date.now();
    const timers: NodeJS.Timeout[] = [];
    let stopForwarding = () => undefined as void;

    const disconnect = (reason: string) => {
      if (cert) opts.emit({ event: 'client.disconnect', user: cert.keyId, login, reason, server_id: opts.serverId, 'addr.remote': `${remote.addr}:${remote.port}` });
      client.end();
    };

    client.on('error', (err) => log.debug('connection error', { remote: remote.addr, error: err.message }));
    logNegotiated(client, log, remote.addr);
    client.on('close', () => {
      this.clients.delete(client);
      if (cert) this.users.remove(cert.keyId);
      timers.forEach(clearTimeout);
      stopForwarding();
    });

    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      login = ctx.username;
      let verified: Certificate;
      try {
        verified = verifyUserCertAuth(ctx, { trustedCAs: opts.trustedUserCAs() });
      } catch (err) {
        // Audited whether the key came with a signature or only as a probe: a refused probe is the last try with that key.
        opts.emit({ event: 'auth', user: login, success: false, error: (err as Error).message, server_id: opts.serverId, 'addr.remote': `${remote.addr}:${remote.port}` });
        log.info('authentication refused', { login, remote: remote.addr, error: (err as Error).message });
        return ctx.reject(['publickey']);
      }
      if (!(ctx as { signature?: Buffer }).signature) return ctx.accept();
      if (!this.users.tryAdd(verified.keyId)) {
        opts.emit({ event: 'auth', user: login, success: false, error: 'too many users connected', server_id: opts.serverId, 'addr.remote': `${remote.addr}:${remote.port}` });
        log.warn('user limit reached, refusing a login', { user: verified.keyId, max_users: opts.maxUsers });
        return ctx.reject(['publickey']);
      }
      lookupUser(login).then(
        (u) => {
          if (cert) {
            this.users.remove(verified.keyId);
            return ctx.reject(['publickey']);
          }
          cert = verified;
          osUser = u;
          ctx.accept();
        },
        (err: Error) => {
          this.users.remove(verified.keyId);
          opts.emit({ event: 'auth', user: login, success: false, error: err.message, server_id: opts.serverId, 'addr.remote': `${remote.addr}:${remote.port}` });
          ctx.reject(['publickey']);
        },
      );
    });

    client.on('ready', () => {
      const c = cert!;
      const u = osUser!;
      const permit = permitsOf(c);
      const touch = () => (lastActivity = Date.now());
      if (opts.idleTimeoutMs > 0) {
        const check = () => {
          const idle = Date.now() - lastActivity;
          if (idle >= opts.idleTimeoutMs) disconnect(`client is idle for ${Math.round(idle / 1000)}s, closing the connection`);
          else timers.push(setTimeout(check, opts.idleTimeoutMs - idle + 10));
        };
        timers.push(setTimeout(check, opts.idleTimeoutMs));
      }
      if (opts.disconnectExpiredCert && c.validBefore < 0xffffffffffffffffn) {
        const ms = Number(c.validBefore) * 1000 - Date.now();
        timers.push(setTimeout(() => disconnect('client certificate has expired'), Math.max(0, Math.min(ms, 2 ** 31 - 1))));
      }
      const who = { user: c.keyId, login, server_id: opts.serverId, namespace: 'default' };
      stopForwarding = serveForwarding(client, { allowed: permit.portForwarding, privileged: u.uid === 0, emit: opts.emit, who, touch, log });
      client.on('session', (accept, reject) => {
        touch();
        const session = accept();
        if (!session) return reject?.();
        new NodeSession(session, {
          user: c.keyId,
          login,
          osUser: u,
          permit,
          remoteAddr: remote.addr,
          remotePort: remote.port,
          localAddr: local.addr,
          localPort: local.port,
          serverId: opts.serverId,
          hostname: opts.hostname,
          labels: opts.labels,
          permitUserEnv: opts.permitUserEnv,
          ...(opts.pam ? { pam: opts.pam } : {}),
          emit: opts.emit,
          record: opts.record,
          openAgentChannel: (cb) => client.openssh_authAgent((err, ch) => cb(err, ch)),
          touch,
          log,
        });
      });
    });
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.end();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
