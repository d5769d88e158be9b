/**
 * Outbound TCP connections through an HTTP CONNECT proxy when the environment names one, as
 * Teleport's agents and tsh do: `HTTPS_PROXY` (or `https_proxy`) unless `NO_PROXY` (or
 * `no_proxy`) lists the destination, by proxy-from-env's rules (an entry matches its exact host,
 * a leading dot or `*.` a suffix, `*` everything; an entry with a port only that port). The proxy
 * URL is `http://` or `https://`, optionally with `user:password@` for Basic authentication.
 * What runs over these connections is TLS or SSH end to end, so the proxy sees a CONNECT line and
 * ciphertext only.
 */
import * as net from 'node:net';
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

/** A connected socket to `host:port`, through the environment's HTTP proxy when it names one. */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  const proxy = proxyFor(host, port);
  const target = hostPort(host, port);
  return new Promise((resolve, reject) => {
    const proxyPort = proxy ? Number(proxy.port || (proxy.protocol === 'https:' ? 443 : 80)) : port;
    const proxyHost = proxy ? proxy.hostname.replace(/^\[(.*)\]$/, '$1') : host;
    const sock: net.Socket =
      proxy?.protocol === 'https:'
        ? tls.connect({ host: proxyHost, port: proxyPort, ...(net.isIP(proxyHost) ? {} : { servername: proxyHost }) })
        : net.connect({ host: proxyHost, port: proxyPort });
    const via = proxy ? ` through the HTTP proxy ${proxy.host}` : '';
    const fail = (why: string) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new ConnectionProblemError(`cannot connect to ${target}${via}: ${why}`));
    };
    const timer = setTimeout(() => fail(`no connection in ${Math.round(timeoutMs / 1000)}s`), timeoutMs);
    const onError = (err: Error) => fail(err.message);
    const onClose = () => fail('the proxy closed the connection');
    const done = () => {
      clearTimeout(timer);
      sock.off('error', onError).off('close', onClose);
      resolve(sock);
    };
    sock.on('error', onError);
    if (!proxy) {
      sock.once('connect', done);
      return;
    }
    sock.on('close', onClose);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_ANSWER_HEAD) fail('its answer to CONNECT is not HTTP');
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})([^\r\n]*)/.exec(head.subarray(0, end).toString('latin1'));
      if (status?.[1] !== '200') return fail(status ? `it answered CONNECT with ${status[1]}${status[2]}` : 'its answer to CONNECT is not HTTP');
      sock.off('data', onData);
      sock.pause();
      const rest = head.subarray(end + 4);
      if (rest.length) sock.unshift(rest);
      done();
    };
    sock.on('data', onData);
    const auth = proxy.username ? `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}\r\n` : '';
    sock.once(proxy.protocol === 'https:' ? 'secureConnect' : 'connect', () => sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`));
  });
}
