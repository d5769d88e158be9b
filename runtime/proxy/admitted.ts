/**
 * The TCP front of a proxy SSH listener fed to ssh2 with `injectSocket`: each connection passes
 * the connection limit (service/connlimit.ts) and the pre-authentication limits
 * (service/preauth.ts) before ssh2 sees a byte, and is kept by its remote address while open,
 * so the SSH connection's handler can end the raw socket (ssh2 only half-closes on an error,
 * which a dead peer never completes) and closing the listener ends them all.
 */
import type * as net from 'node:net';
import type { Server } from 'ssh2';
import type { ConnectionLimit } from '../service/connlimit';
import type { PreAuthGate } from '../service/preauth';
import type { Logger } from '../utils/logger';
import { joinHostPort } from './target';

export class AdmittedSockets {
  private readonly byRemote = new Map<string, net.Socket>();

  constructor(
    /** The server new connections go to (replaced by a host CA rotation). */
    public ssh: Server,
    private readonly connections: ConnectionLimit,
    private readonly preAuth: PreAuthGate,
    private readonly log: Logger,
  ) {}

  /** The listener's connection handler. */
  readonly admit = (sock: net.Socket): void => {
    sock.on('error', (err) => this.log.debug('connection error', { remote: sock.remoteAddress, error: err.message }));
    if (!this.connections.admit(sock) || !this.preAuth.admit(sock)) return;
    const key = joinHostPort(sock.remoteAddress!, sock.remotePort!);
    this.byRemote.set(key, sock);
    sock.once('close', () => {
      if (this.byRemote.get(key) === sock) this.byRemote.delete(key);
    });
    this.ssh.injectSocket(sock);
  };

  /** The open socket whose remote address is `remote` (`host:port`). */
  socketOf(remote: string): net.Socket | undefined {
    return this.byRemote.get(remote);
  }

  destroyAll(): void {
    for (const sock of this.byRemote.values()) sock.destroy();
  }
}
