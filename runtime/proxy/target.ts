/**
 * The `proxy` subsystem request a client sends on the proxy's SSH port
 * (formats.md §4.2): `proxy:host:port`, `proxy:host:port@cluster`,
 * `proxy:host:port@namespace@cluster` or `proxy:@cluster` (that cluster's
 * auth server). Parsed strictly: anything else is a BadParameterError.
 */
import { isIP } from 'node:net';
import { BadParameterError } from '../utils/errors';

export const PROXY_SUBSYSTEM_PREFIX = 'proxy:';
export const DEFAULT_NAMESPACE = 'default';

export interface ProxyTarget {
  /** Empty for `proxy:@cluster` (the cluster's auth server). */
  host: string;
  /** 0 when the request left the port empty or gave 0: any port. */
  port: number;
  namespace: string;
  /** Empty when the request named no cluster. */
  cluster: string;
}

const MAX_REQUEST = 1024;
const HOST_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9_])?$/;
const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?$/;
const PORT_RE = /^[0-9]{1,5}$/;

function invalid(request: string, why: string): BadParameterError {
  return new BadParameterError(`invalid proxy subsystem request ${JSON.stringify(request)}: ${why}; expected proxy:host:port[@cluster] or proxy:host:port@namespace@cluster`);
}

/** `host:port`, `host:` or `[v6]:port`: the port part is required, its value may be empty. */
function splitHostPort(request: string, hostPort: string): { host: string; port: number } {
  let host: string;
  let portText: string;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0 || hostPort[close + 1] !== ':') throw invalid(request, `"${hostPort}" is not [ipv6]:port`);
    host = hostPort.slice(1, close);
    portText = hostPort.slice(close + 2);
    if (isIP(host) !== 6) throw invalid(request, `"${host}" is not an IPv6 address`);
  } else {
    const colon = hostPort.lastIndexOf(':');
    if (colon < 0) throw invalid(request, `"${hostPort}" has no port (use host:port, or host: for any port)`);
    host = hostPort.slice(0, colon);
    portText = hostPort.slice(colon + 1);
    if (!host) throw invalid(request, 'the host is empty');
    if (!HOST_RE.test(host)) throw invalid(request, `"${host}" is not a host name or IP address`);
  }
  if (portText === '') return { host, port: 0 };
  if (!PORT_RE.test(portText) || Number(portText) > 65535) throw invalid(request, `"${portText}" is not a port number`);
  return { host, port: Number(portText) };
}

function checkName(request: string, value: string, what: string): string {
  if (!NAME_RE.test(value)) throw invalid(request, `"${value}" is not a valid ${what} name`);
  return value;
}

/** Parses a subsystem name that starts with `proxy:`. */
export function parseProxySubsystem(request: string): ProxyTarget {
  if (request.length > MAX_REQUEST) throw invalid(request.slice(0, 64) + '…', `longer than ${MAX_REQUEST} characters`);
  if (!request.startsWith(PROXY_SUBSYSTEM_PREFIX)) throw invalid(request, `it does not start with "${PROXY_SUBSYSTEM_PREFIX}"`);
  const parts = request.slice(PROXY_SUBSYSTEM_PREFIX.length).split('@');
  if (parts.length > 3) throw invalid(request, 'too many "@"');
  const [hostPort, ...rest] = parts;
  if (hostPort === '') {
    if (parts.length !== 2 || !parts[1]) throw invalid(request, parts.length === 1 ? 'the target is empty' : 'proxy:@cluster takes only a cluster name');
    return { host: '', port: 0, namespace: DEFAULT_NAMESPACE, cluster: checkName(request, parts[1], 'cluster') };
  }
  const { host, port } = splitHostPort(request, hostPort);
  const namespace = rest.length === 2 ? checkName(request, rest[0], 'namespace') : DEFAULT_NAMESPACE;
  const clusterText = rest.length ? rest[rest.length - 1] : '';
  const cluster = clusterText === '' ? '' : checkName(request, clusterText, 'cluster');
  return { host, port, namespace, cluster };
}

/** `host:port` as it is dialled, with brackets around an IPv6 address. */
export function joinHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
