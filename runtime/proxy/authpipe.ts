/**
 * The auth API through the proxy's web port, for nodes behind NAT that can
 * reach only the proxy: `GET /webapi/auth/connect` with `Upgrade:
 * teleport-auth` turns the connection into a byte pipe to an auth server,
 * over which the node runs its usual mutual-TLS session with auth (joining
 * with a token and the CA pin, heartbeats, events, recordings). The proxy
 * sees only ciphertext and decides nothing: auth authenticates and
 * authorizes the node exactly as on a direct connection (anonymous callers
 * reach only /v1/ping, /v1/cacert and the token-checked join), and the
 * node verifies auth against the pinned cluster CA, so the outer web TLS
 * layer needs no trust of its own. The same pipe is what `proxy:@cluster`
 * already gives users on the proxy's SSH port.
 */
import type * as http from 'node:http';
import { once } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { ConnectionProblemError } from '../utils/errors';
import { dialTls, readAnswerHead, within } from '../utils/httpconnect';
import { Logger } from '../utils/logger';
import { HostPort } from './resolve';
import { joinHostPort } from './target';

export const AUTH_PIPE_PATH = '/webapi/auth/connect';
export const AUTH_PIPE_PROTOCOL = 'teleport-auth';

export interface AuthPipeOptions {
  /** Opens a TCP connection to an auth server. */
  connectAuth: () => Promise<net.Socket>;
  /** The clients' ends of the open pipes, destroyed (with their auth ends) when the web listener closes. */
  open: Set<Duplex>;
  /** Pipes open at once; one more is answered 503 (each holds a connection to auth, which anyone may ask for). */
  maxPipes: number;
  log: Logger;
}

function answer(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** The proxy side: answers an `upgrade` event of the web server; anything but the auth pipe is refused with 400. */
export function serveAuthPipe(req: http.IncomingMessage, socket: Duplex, head: Buffer, opts: AuthPipeOptions): void {
  const { open: track, log } = opts;
  socket.on('error', () => undefined);
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'GET' || path !== AUTH_PIPE_PATH || (req.headers.upgrade ?? '').toLowerCase() !== AUTH_PIPE_PROTOCOL) return answer(socket, '400 Bad Request');
  if (track.size >= opts.maxPipes) {
    log.warn('too many auth pipes open, refusing one', { remote: req.socket.remoteAddress, max: opts.maxPipes });
    return answer(socket, '503 Service Unavailable');
  }
  track.add(socket);
  socket.once('close', () => track.delete(socket));
  opts.connectAuth().then(
    (auth) => {
      if (socket.destroyed) return void auth.destroy();
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${AUTH_PIPE_PROTOCOL}\r\n\r\n`);
      if (head.length) auth.write(head);
      socket.pipe(auth).pipe(socket);
      const done = () => {
        socket.destroy();
        auth.destroy();
      };
      socket.once('close', done);
      auth.once('close', done);
    },
    (err: Error) => {
      log.warn('cannot open the auth pipe for a node', { remote: req.socket.remoteAddress, error: err.message });
      track.delete(socket);
      answer(socket, '502 Bad Gateway');
    },
  );
}

/**
 * The node side: a byte stream to an auth server through the proxy at `web`
 * (https; through the environment's HTTP proxy, utils/httpconnect.ts),
 * paused (pipe it, read it or resume it). The proxy's certificate is not
 * checked: what runs over the pipe is TLS with auth, verified against
 * the cluster CA (see above).
 */
export async function connectAuthPipe(web: HostPort, timeoutMs: number): Promise<Duplex> {
  const where = joinHostPort(web.host, web.port);
  let sock: tls.TLSSocket | undefined;
  const upgrade = async () => {
    sock = await dialTls(web.host, web.port, timeoutMs, { rejectUnauthorized: false });
    await once(sock, 'secureConnect');
    sock.write(`GET ${AUTH_PIPE_PATH} HTTP/1.1\r\nHost: ${where}\r\nConnection: Upgrade\r\nUpgrade: ${AUTH_PIPE_PROTOCOL}\r\n\r\n`);
    const { status } = await readAnswerHead(sock);
    if (status !== '101') throw new Error(`it answered ${status || 'something that is not HTTP'} (is it a Teleport proxy's web port?)`);
    return sock;
  };
  try {
    return await within(upgrade(), timeoutMs, () => sock?.destroy());
  } catch (err) {
    sock?.destroy();
    throw new ConnectionProblemError(`cannot reach the auth server through the proxy at ${where}: ${(err as Error).message}`);
  }
}
