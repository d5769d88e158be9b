/**
 * The leaf's half of establishing trust (trust.ts): `POST
 * https://<web_proxy_addr>/webapi/trustedclusters/validate` with the root's
 * token and the leaf's CAs (public parts), answered with the root's CAs.
 * One request to the root's web API (client/weblogin.ts webRequest: JSON,
 * size limit, HTTPS_PROXY, typed errors).
 *
 * The root's HTTPS certificate is verified against the system's CAs (and
 * NODE_EXTRA_CA_CERTS), because the request carries the token; `teleport
 * start --insecure` turns that off, as in Teleport 4.x, for a root that
 * serves a self-signed certificate.
 */
import { isUntrustedCertError, webRequest } from '../client/weblogin';
import { parseAddr } from '../config/address';
import { Ports } from '../contract/ports';
import { AccessDeniedError, BadParameterError } from '../utils/errors';
import type { ExchangedCAs, TrustExchange } from './trust';

export const VALIDATE_PATH = '/webapi/trustedclusters/validate';

export function trustExchange(opts: { insecure: boolean }): TrustExchange {
  return async (tc, ours) => {
    const web = parseAddr(tc.spec.web_proxy_addr, Ports.web);
    const where = tc.spec.web_proxy_addr;
    try {
      return await webRequest<ExchangedCAs>({ scheme: 'https', host: web.host, port: web.port, insecure: opts.insecure }, 'POST', VALIDATE_PATH, {
        token: tc.spec.token,
        certificate_authorities: ours,
      });
    } catch (err) {
      if (isUntrustedCertError(err)) {
        const why = ((err as Error).cause as Error).message;
        throw new AccessDeniedError(
          `the trusted cluster uses misconfigured HTTP/TLS certificate: ${where}: ${why} (trust its CA with NODE_EXTRA_CA_CERTS, or start teleport with --insecure to skip the check)`,
        );
      }
      // The root's answer (a refused token, a name it knows with other keys), with where it came from.
      const refused = `the trusted cluster at ${where} refused to establish trust: ${(err as Error).message}`;
      if (err instanceof AccessDeniedError) throw new AccessDeniedError(refused);
      if (err instanceof BadParameterError) throw new BadParameterError(refused);
      throw err;
    }
  };
}
