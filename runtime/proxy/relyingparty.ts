/**
 * The WebAuthn relying party of a browser's request to the proxy's web
 * listener: the proxy's public address (`proxy_service.public_addr`) that the
 * page's origin (the request's `Origin` header) is. Its ID is that address's
 * host name, its origin `https://host[:port]` (`http://` too when the
 * listener is plain HTTP behind a load balancer). A page from any other
 * origin, a proxy without a public address, or one whose public address is
 * an IP address (no RP ID can be one) runs no ceremony: WebAuthn binds a key
 * to the host name, so the proxy must know the one its users see. tsh, which
 * has no origin, is sent to the first public address (`publicWebUrl`).
 */
import type * as http from 'node:http';
import { isIP } from 'node:net';
import type { RelyingParty } from '../auth/webauthn';
import type { HostPort } from '../config';
import { AccessDeniedError, BadParameterError } from '../utils/errors';

const DEFAULT_PORTS: Record<string, number> = { 'https:': 443, 'http:': 80 };

/** `tls`: whether the listener speaks TLS itself (else `http:` origins count too). */
export function relyingParty(req: http.IncomingMessage, publicAddrs: readonly HostPort[], tls: boolean): RelyingParty {
  if (!publicAddrs.length) {
    throw new BadParameterError("security keys need the proxy's public host name as their relying party ID: set proxy_service.public_addr");
  }
  const header = req.headers.origin;
  let origin: URL;
  try {
    origin = new URL(header ?? '');
  } catch {
    throw new BadParameterError("security keys are used from the proxy's web pages (the request has no Origin)");
  }
  const schemes = tls ? ['https:'] : ['https:', 'http:'];
  const port = Number(origin.port) || DEFAULT_PORTS[origin.protocol];
  const addr = publicAddrs.find((a) => a.host.toLowerCase() === origin.hostname.toLowerCase() && a.port === port);
  if (!addr || !schemes.includes(origin.protocol) || origin.username || origin.password) {
    const own = publicAddrs.map((a) => `https://${a.host}:${a.port}`).join(', ');
    throw new AccessDeniedError(`security keys are used on the proxy's public address (${own}), not from ${origin.origin}`);
  }
  if (isIP(addr.host)) throw new BadParameterError(`proxy_service.public_addr ${addr.host} is an IP address: security keys need a DNS name as their relying party ID`);
  return { id: addr.host.toLowerCase(), origin: origin.origin };
}

/** `https://<first public_addr>` (no port when 443), where tsh sends the user for their key. */
export function publicWebUrl(publicAddrs: readonly HostPort[]): string {
  const addr = publicAddrs[0];
  if (!addr) throw new BadParameterError("security keys need the proxy's public host name as their relying party ID: set proxy_service.public_addr");
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  return `https://${host}${addr.port === 443 ? '' : `:${addr.port}`}`;
}
