/**
 * Connections the proxy opens to its own SSH listener on someone else's
 * behalf (the browser terminal, terminal.ts): each is registered by its local
 * address while it is open, so that the SSH service takes the browser's
 * address as the client's (in its audit events and in the hello to the node,
 * hello.ts) instead of its own. Only code in this process registers, and only
 * sockets it opened itself; no two open connections to the listener share a
 * source address and port.
 */
import type * as net from 'node:net';
import { unmapIPv4 } from '../utils/ip';
import type { HostPort } from './resolve';

const keyOf = (host: string, port: number) => `${unmapIPv4(host)}|${port}`;

export class LocalClients {
  private readonly byLocal = new Map<string, HostPort>();

  /** `sock`, dialled from this process to the SSH listener, serves `client` until it closes. */
  register(sock: net.Socket, client: HostPort): void {
    if (sock.localAddress === undefined || sock.localPort === undefined || sock.destroyed) return;
    const key = keyOf(sock.localAddress, sock.localPort);
    this.byLocal.set(key, client);
    sock.once('close', () => this.byLocal.delete(key));
  }

  /** The client a connection that reached the SSH listener from `remote` serves, when this process opened it. */
  clientOf(remote: HostPort): HostPort | undefined {
    return this.byLocal.get(keyOf(remote.host, remote.port));
  }
}
