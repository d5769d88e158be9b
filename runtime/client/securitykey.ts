/**
 * `tsh login` with a security key. A key answers only pages on the proxy's
 * public origin, so tsh hands the ceremony to a browser: after the password
 * (`POST /webapi/mfa/cli/begin`) the proxy gives a one-time request with a
 * URL on its own origin (`/web/cli-mfa/<request id>`) and a secret; tsh
 * prints the URL, the user opens it and touches their key, and tsh collects
 * the key's answer with its secret (`POST /webapi/mfa/cli/<id>/collect`,
 * once a second) until the request expires. The answer then goes with the
 * password to `/webapi/ssh/certs` like a code would (runtime/auth/webauthn-cli.ts).
 */
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AccessDeniedError } from '../utils/errors';
import { webRequest, WebClientOptions } from './weblogin';

/** How often tsh asks whether the page has answered. */
const POLL_MS = 1000;

/** A security key's answer (WebAuthn's AuthenticationResponseJSON), as the proxy passes it on. */
export type KeyAnswer = Record<string, unknown>;

/** Runs the browser ceremony for `user`; resolves the key's answer. */
export async function securityKeyAnswer(web: WebClientOptions, user: string, password: string, out: Writable = process.stderr): Promise<KeyAnswer> {
  const req = await webRequest<{ request_id: string; secret: string; expires: string; url: string }>(web, 'POST', '/webapi/mfa/cli/begin', { user, pass: password });
  out.write(`Open this page in a browser and use your security key (it expires at ${new Date(req.expires).toLocaleTimeString()}):\n  ${req.url}\n`);
  const until = new Date(req.expires).getTime();
  while (Date.now() < until) {
    const got = await webRequest<{ webauthn_response?: KeyAnswer; pending?: boolean }>(web, 'POST', `/webapi/mfa/cli/${req.request_id}/collect`, { secret: req.secret });
    if (got.webauthn_response) return got.webauthn_response;
    await sleep(POLL_MS);
  }
  throw new AccessDeniedError('the security key was not used in time: run tsh login again');
}
