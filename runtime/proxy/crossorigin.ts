/**
 * What keeps other web sites from using a browser to call the web API: a
 * request that changes something (any method but GET/HEAD/OPTIONS) must not
 * come from another site, and a POST must carry `Content-Type:
 * application/json`, which a page on another site can only send after a CORS
 * preflight this proxy never grants (a plain `<form>` or a `text/plain` fetch
 * cannot). Another site is what the browser says:
 *   - `Sec-Fetch-Site` other than `same-origin` or `none` (user-initiated);
 *   - else an `Origin` other than this proxy's own (the Host it was asked for,
 *     over https, or http too when TLS ends in front of `--insecure-no-tls`).
 * Requests with neither header are not from a browser (tsh, curl) and pass.
 */
import * as http from 'node:http';
import { AccessDeniedError, BadParameterError } from '../utils/errors';

/** A body that is not JSON: answered 415. */
export class UnsupportedMediaTypeError extends BadParameterError {}

const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS'];
const CROSS_SITE = 'cross-site requests are refused: the web API takes requests from its own pages only';

/** Whether `origin` is this proxy's own: the Host it was asked for, over one of `schemes`. */
export function sameOrigin(req: http.IncomingMessage, origin: string, schemes: readonly string[]): boolean {
  const host = req.headers.host;
  if (!host) return false;
  let o: URL;
  let own: URL;
  try {
    o = new URL(origin);
    own = new URL(`${o.protocol}//${host}`);
  } catch {
    return false;
  }
  return schemes.includes(o.protocol) && o.origin === own.origin;
}

/**
 * Throws AccessDeniedError for a cross-site request that changes something,
 * UnsupportedMediaTypeError for a POST whose body is not declared JSON.
 * `tls` is whether the listener speaks TLS itself.
 */
export function checkNotCrossSite(req: http.IncomingMessage, tls: boolean): void {
  const method = req.method ?? 'GET';
  if (SAFE_METHODS.includes(method)) return;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) {
    if (site !== 'same-origin' && site !== 'none') throw new AccessDeniedError(CROSS_SITE);
  } else {
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(req, origin, tls ? ['https:'] : ['https:', 'http:'])) throw new AccessDeniedError(CROSS_SITE);
  }
  if (method === 'POST') {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') {
      throw new UnsupportedMediaTypeError(`the web API takes JSON bodies: send Content-Type: application/json${type ? `, not ${type}` : ''}`);
    }
  }
}
