/**
 * The leaf's half of establishing trust (trust.ts): `POST
 * https://<web_proxy_addr>/webapi/trustedclusters/validate` with the root's
 * token and the leaf's CAs (public parts), answered with the root's CAs.
 *
 * The root's HTTPS certificate is verified against the system's CAs (and
 * NODE_EXTRA_CA_CERTS), because the request carries the token; `teleport
 * start --insecure` turns that off, as in Teleport 4.x, for a root that
 * serves a self-signed certificate. Goes through HTTPS_PROXY when the
 * environment names one (utils/httpconnect.ts).
 */
import * as https from 'node:https';
import { AccessDeniedError, ConnectionProblemError, TeleportError } from '../utils/errors';
import { dialTls } from '../utils/httpconnect';
import { parseAddr } from '../config/address';
import { Ports } from '../contract/ports';
import type { ExchangedCAs, TrustExchange } from './trust';

const TIMEOUT_MS = 20_000;
const MAX_ANSWER_BYTES = 256 * 1024;
export const VALIDATE_PATH = '/webapi/trustedclusters/validate';

const TLS_ERROR_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|HOSTNAME|ERR_TLS/;

export function trustExchange(opts: { insecure: boolean }): TrustExchange {
  return async (tc, ours) => {
    const web = parseAddr(tc.spec.web_proxy_addr, Ports.web);
    const where = tc.spec.web_proxy_addr;
    const body = Buffer.from(JSON.stringify({ token: tc.spec.token, certificate_authorities: ours }));
    let sock;
    try {
      sock = await dialTls(web.host, web.port, TIMEOUT_MS, { rejectUnauthorized: !opts.insecure });
    } catch (err) {
      throw new ConnectionProblemError(`cannot reach the trusted cluster's proxy at ${where}: ${(err as Error).message}`);
    }
    return new Promise<ExchangedCAs>((resolve, reject) => {
      const req = https.request(
        {
          host: web.host,
          port: web.port,
          method: 'POST',
          path: VALIDATE_PATH,
          headers: { 'content-type': 'application/json', 'content-length': body.length },
          createConnection: () => sock,
          timeout: TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER_BYTES) req.destroy(new ConnectionProblemError(`the answer of ${where} is larger than ${MAX_ANSWER_BYTES} bytes`));
            else chunks.push(c);
          });
          res.on('end', () => {
            let json: { error?: { message?: string }; certificate_authorities?: unknown } | undefined;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString()) as typeof json;
            } catch {
              json = undefined;
            }
            if (res.statusCode === 200 && json) return resolve(json as ExchangedCAs);
            const why = json?.error?.message ?? `HTTP ${res.statusCode}`;
            const Err = res.statusCode === 403 || res.statusCode === 401 ? AccessDeniedError : ConnectionProblemError;
            reject(new Err(`the trusted cluster at ${where} refused to establish trust: ${why}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new ConnectionProblemError(`no answer from ${where} within ${TIMEOUT_MS / 1000}s`)));
      req.on('error', (err: Error & { code?: string }) => {
        if (err instanceof TeleportError) return reject(err);
        if (TLS_ERROR_CODES.test(err.code ?? '')) {
          return reject(
            new AccessDeniedError(
              `the trusted cluster uses misconfigured HTTP/TLS certificate: ${where}: ${err.message} (trust its CA with NODE_EXTRA_CA_CERTS, or start teleport with --insecure to skip the check)`,
            ),
          );
        }
        reject(new ConnectionProblemError(`cannot reach the trusted cluster's proxy at ${where}: ${err.message}`));
      });
      req.end(body);
    });
  };
}
