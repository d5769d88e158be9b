/**
 * Port forwarding on the node: `direct-tcpip` channels (ssh -L) dial out,
 * `tcpip-forward` requests (ssh -R) listen on loopback unless told otherwise,
 * like OpenSSH with GatewayPorts no. Both need permit-port-forwarding.
 */
import * as net from 'node:net';
import type { Connection, ServerChannel } from 'ssh2';
import { EventFields } from '../events/filelog';
import { Logger } from '../utils/logger';

export interface ForwardingContext {
  allowed: boolean;
  /** Only root may listen on ports below 1024. */
  privileged: boolean;
  emit(fields: EventFields): void;
  who: Record<string, string>;
  touch(): void;
  log: Logger;
}

/**
 * Sends EOF on a server channel once every byte written to it before has gone
 * out, and leaves it open for the other direction. ssh2's `end()` on a server
 * channel sends EOF and CLOSE together, and a peer that gets CLOSE stops reading
 * its side: an answer sent after the request was half-closed would be lost.
 */
export function eofAfterWrites(channel: ServerChannel): void {
  // Already ended (ssh2 ends a channel the client closed): nothing more may be written, nor sent.
  if (channel.writableEnded || channel.destroyed) return;
  // Writes complete in order: the empty write's callback runs after all the
  // data before it was handed to the transport (or once the window lets it).
  channel.write(Buffer.alloc(0), () => channel.eof());
}

/**
 * Bytes both ways between a socket and a forwarded channel, half-close kept as
 * OpenSSH keeps it: the socket's EOF becomes the channel's EOF, the channel's
 * EOF ends the socket's writing side, and the channel is closed when the
 * socket is closed (both directions done, or an error).
 */
export function spliceChannel(sock: net.Socket, channel: ServerChannel, touch?: () => void): void {
  sock.pipe(channel, { end: false });
  sock.once('end', () => eofAfterWrites(channel));
  channel.pipe(sock);
  if (touch) {
    sock.on('data', touch);
    channel.on('data', touch);
  }
  const done = () => {
    sock.destroy();
    channel.close();
  };
  sock.on('error', done).on('close', done);
  channel.on('close', () => sock.destroy());
}

export function serveForwarding(client: Connection, ctx: ForwardingContext): () => void {
  const listeners = new Map<string, net.Server>();

  client.on('tcpip', (accept, reject, info) => {
    const addr = `${info.destIP}:${info.destPort}`;
    if (!ctx.allowed) {
      ctx.emit({ event: 'port', addr, success: false, error: 'port forwarding is not permitted', ...ctx.who, code: 'T3003E' });
      return reject();
    }
    const sock = net.connect({ host: info.destIP, port: info.destPort, allowHalfOpen: true });
    sock.once('connect', () => {
      const channel = accept();
      if (!channel) return sock.destroy();
      ctx.emit({ event: 'port', addr, success: true, ...ctx.who, code: 'T3003I' });
      spliceChannel(sock, channel, ctx.touch);
    });
    sock.once('error', (err) => {
      ctx.emit({ event: 'port', addr, success: false, error: err.message, ...ctx.who, code: 'T3003E' });
      reject();
    });
  });

  client.on('request', (accept, reject, name, info) => {
    if (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward') return reject?.();
    const i = info as { bindAddr: string; bindPort: number };
    const host = ['', '0.0.0.0', '::', '*', 'localhost'].includes(i.bindAddr) ? '127.0.0.1' : i.bindAddr;
    const key = `${i.bindAddr}:${i.bindPort}`;
    if (name === 'cancel-tcpip-forward') {
      const srv = listeners.get(key);
      if (!srv) return reject?.();
      srv.close();
      listeners.delete(key);
      return accept?.();
    }
    if (!ctx.allowed || (i.bindPort !== 0 && i.bindPort < 1024 && !ctx.privileged)) {
      ctx.emit({ event: 'port', addr: key, success: false, error: 'remote port forwarding is not permitted', ...ctx.who, code: 'T3003E' });
      return reject?.();
    }
    const srv = net.createServer({ allowHalfOpen: true }, (sock) => {
      client.forwardOut(i.bindAddr, bound, sock.remoteAddress ?? '', sock.remotePort ?? 0, (err, channel) => {
        if (err) return sock.destroy();
        spliceChannel(sock, channel, ctx.touch);
      });
    });
    let bound = i.bindPort;
    srv.once('error', (err) => {
      ctx.log.debug('remote forward listen failed', { error: err });
      reject?.();
    });
    srv.listen(i.bindPort, host, () => {
      bound = (srv.address() as net.AddressInfo).port;
      listeners.set(key, srv);
      ctx.emit({ event: 'port', addr: `${host}:${bound}`, success: true, ...ctx.who, code: 'T3003I' });
      accept?.(i.bindPort === 0 ? bound : undefined);
    });
  });

  return () => {
    for (const srv of listeners.values()) srv.close();
    listeners.clear();
  };
}
