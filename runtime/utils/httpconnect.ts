/**
 * Outbound TCP connections through an HTTP CONNECT proxy when the environment names one, as
 * Teleport's agents and tsh do: `HTTPS_PROXY` (or `https_proxy`) unless `NO_PROXY` (or
 * `no_proxy`) lists the destination, by proxy-from-env's rules (an entry matches its exact host,
 * a leading dot or `*.` a suffix, `*` everything; an entry with a port only that port). The proxy
 * URL is `http://` or `https://`, optionally with `user:password@` for Basic authentication.
 * What runs over these connections is TLS or SSH end to end, so the proxy sees a CONNECT line and
 * ciphertext only.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { getProxyForUrl } from 'proxy-from-env';
import { BadParameterError, ConnectionProblemError } from './errors';

/** The longest CONNECT answer head read before giving up on the proxy. */
const MAX_ANSWER_HEAD = 16 * 1024;

function hostPort(host: string, port: number): string {
  return net.isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The HTTP proxy to reach `host:port` through, from the environment; undefined for a direct connection. */
export function proxyFor(host: string, port: number): URL | undefined {
  const raw = getProxyForUrl(`https://${hostPort(host, port)}`);
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new BadParameterError(`HTTPS_PROXY: "${raw}" is not a proxy URL (http://host:port or https://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadParameterError(`HTTPS_PROXY: "${url.protocol}" proxies are not supported (http:// or https://)`);
  return url;
}

/**
 * Reads the head of an HTTP/1.x answer from `sock` and resolves with its status code and reason
 * (status '' when the answer is not HTTP). The socket is then paused and holds whatever followed
 * the head. Rejects when the connection fails or closes first, or no head ends within 16 KiB.
 */
export function readAnswerHead(sock: Duplex): Promise<{ status: string; reason: string }> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const settle = (err?: Error) => {
      sock.off('data', onData).off('error', onError).off('close', onClose);
      if (err) reject(err);
    };
    const onError = (err: Error) => settle(err);
    const onClose = () => settle(new Error('the connection closed before an answer'));
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_ANSWER_HEAD) settle(new Error('its answer is not HTTP'));
        return;
      }
      settle();
      sock.pause();
      const rest = head.subarray(end + 4);
      if (rest.length) sock.unshift(rest);
      const m = /^HTTP\/1\.[01] (\d{3}) ?([^\r\n]*)/.exec(head.subarray(0, end).toString('latin1'));
      resolve({ status: m?.[1] ?? '', reason: m?.[2] ?? '' });
    };
    sock.on('data', onData).on('error', onError).on('close', onClose);
  });
}

/** `work`, or a rejection after `ms` (calling `onTimeout` first, to release what the work holds). */
export function within<T>(work: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`no connection in ${Math.round(ms / 1000)}s`));
    }, ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** A connected socket to `host:port`, through the environment's HTTP proxy when it names one. */
export async function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  const proxy = proxyFor(host, port);
  const target = hostPort(host, port);
  const proxyHost = proxy ? proxy.hostname.replace(/^\[(.*)\]$/, '$1') : host;
  const proxyPort = proxy ? Number(proxy.port || (proxy.protocol === 'https:' ? 443 : 80)) : port;
  const secure = proxy?.protocol === 'https:';
  const sock: net.Socket = secure ? tls.connect({ host: proxyHost, port: proxyPort, ...serverName(proxyHost) }) : net.connect({ host: proxyHost, port: proxyPort });
  const connect = async () => {
    await once(sock, secure ? 'secureConnect' : 'connect');
    if (!proxy) return;
    const auth = proxy.username ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n` : '';
    sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
    const { status, reason } = await readAnswerHead(sock);
    if (status !== '200') throw new Error(status ? `it answered CONNECT with ${status} ${reason}`.trimEnd() : 'its answer to CONNECT is not HTTP');
  };
  try {
    await within(connect(), timeoutMs, () => sock.destroy());
    return sock;
  } catch (err) {
    sock.destroy();
    const via = proxy ? ` through the HTTP proxy ${proxy.host}` : '';
    throw new ConnectionProblemError(`cannot connect to ${target}${via}: ${(err as Error).message}`);
  }
}

/** `servername` for a TLS connection to `host` (none for an IP address, which SNI cannot carry). */
export function serverName(host: string): { servername?: string } {
  return net.isIP(host) ? {} : { servername: host };
}

/** A TLS connection to `host:port` (handshake under way), over {@link dialTcp}. */
export async function dialTls(host: string, port: number, timeoutMs: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return tls.connect({ ...opts, socket: await dialTcp(host, port, timeoutMs), ...serverName(host) });
}
