/**
 * The proxy's single sign-on routes (the auth server does the logins:
 * runtime/auth/sso/logins.ts):
 *   GET  /webapi/connectors                        the connectors the login page offers (names, display names)
 *   GET  /webapi/{oidc,github}/login/web?connector_id=<name>
 *        a browser login: a random binding value in a cookie (HttpOnly, SameSite=Lax so that it comes
 *        back with the provider's redirect, 10 minutes), then off to the provider
 *   POST /webapi/{oidc,github}/login/console       tsh login --auth=<name>: {redirect_url, state}
 *   GET  /webapi/{oidc,github}/callback            the provider's answer: the browser's binding cookie goes
 *        with it to the auth server; a web login's session gets the session cookie and, for one
 *        minute, a one-time cookie that the login page trades for its bearer token
 *        (POST /webapi/sessions/sso); a console login goes on to tsh's localhost callback
 * A refused login lands on the login page with the reason (`/web/login?sso_error=…`).
 */
import * as http from 'node:http';
import { z } from 'zod';
import { AccessDeniedError } from '../utils/errors';
import { randomToken, tokenDigest } from '../utils/secrets';
import { sessionCookieHeader } from './terminal';

export const SSO_PATH = /^\/webapi\/(oidc|github)\/(login\/web|login\/console|callback)$/;
export const BINDING_COOKIE = '__Host-teleport-sso-binding';
export const HANDOFF_COOKIE = '__Host-teleport-sso-session';
const BINDING_MAX_AGE_S = 600;
const HANDOFF_MAX_AGE_S = 60;

export interface SsoConnectorInfo {
  kind: 'oidc' | 'github';
  name: string;
  display: string;
}

/** What the proxy asks of the auth server for single sign-on. */
export interface SsoApi {
  connectors(): Promise<SsoConnectorInfo[]>;
  ssoBegin(kind: string, body: Record<string, unknown>, clientAddr: string): Promise<{ redirect_url: string; state: string }>;
  ssoComplete(kind: string, body: Record<string, unknown>, clientAddr: string): Promise<{ redirect_url: string; session?: { token: string; user: string; expires_in: number } }>;
  getSession(token: string): Promise<{ user: string; expires?: string }>;
}

/** `POST /webapi/{oidc,github}/login/console` (Teleport's SSOLoginConsoleReq, with tsh's TLS key). */
export const consoleLoginSchema = z
  .object({
    connector_id: z.string().min(1).max(255),
    redirect_url: z.string().min(1).max(2048),
    secret_key: z.string().min(1).max(64),
    public_key: z.string().min(1).max(16384),
    tls_public_key: z.string().max(16384).optional(),
    cert_ttl: z.number().int().nonnegative().optional(),
  })
  .strict();
export type ConsoleLoginBody = z.infer<typeof consoleLoginSchema>;

function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const setCookie = (name: string, value: string, maxAge: number, sameSite: 'Lax' | 'Strict') => `${name}=${value}; Path=/; Max-Age=${maxAge}; Secure; HttpOnly; SameSite=${sameSite}`;

function redirect(res: http.ServerResponse, location: string, cookies: string[]): void {
  res.writeHead(302, { location, 'set-cookie': cookies, 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}

/** `GET …/login/web`: binds the login to this browser, then sends it to the provider. */
export async function beginWebLogin(api: SsoApi, kind: string, url: URL, res: http.ServerResponse, clientAddr: string): Promise<void> {
  const connector = url.searchParams.get('connector_id') ?? '';
  const binding = randomToken(32);
  let to: string;
  try {
    to = (await api.ssoBegin(kind, { type: 'web', connector_id: connector, binding: tokenDigest(binding) }, clientAddr)).redirect_url;
  } catch (err) {
    return refused(res, err as Error);
  }
  redirect(res, to, [setCookie(BINDING_COOKIE, binding, BINDING_MAX_AGE_S, 'Lax')]);
}

/** Back to the login page, which shows why. */
function refused(res: http.ServerResponse, err: Error): void {
  redirect(res, `/web/login?sso_error=${encodeURIComponent(err.message.slice(0, 300))}`, [setCookie(BINDING_COOKIE, '', 0, 'Lax')]);
}

/** `GET …/callback`: the provider's answer, with this browser's binding, to the auth server; then on to the web UI or tsh. */
export async function completeLogin(api: SsoApi, kind: string, url: URL, req: http.IncomingMessage, res: http.ServerResponse, clientAddr: string): Promise<void> {
  const q = url.searchParams;
  const clearBinding = setCookie(BINDING_COOKIE, '', 0, 'Lax');
  try {
    const binding = cookie(req, BINDING_COOKIE);
    const out = await api.ssoComplete(
      kind,
      {
        state: q.get('state') ?? '',
        ...(q.get('code') !== null ? { code: q.get('code') } : {}),
        ...(q.get('error') !== null ? { error: [q.get('error'), q.get('error_description')].filter(Boolean).join(': ') } : {}),
        ...(binding ? { binding } : {}),
      },
      clientAddr,
    );
    if (!out.session) return redirect(res, out.redirect_url, [clearBinding]);
    const s = out.session;
    redirect(res, '/web/login?sso=1', [clearBinding, sessionCookieHeader(s.token, s.expires_in), setCookie(HANDOFF_COOKIE, s.token, HANDOFF_MAX_AGE_S, 'Strict')]);
  } catch (err) {
    refused(res, err as Error);
  }
}

/** `POST /webapi/sessions/sso`: the bearer token of the session a single sign-on login just made in this browser, once. */
export async function handOffSession(api: SsoApi, req: http.IncomingMessage, res: http.ServerResponse): Promise<{ token: string; user: string; expires_in: number }> {
  const token = cookie(req, HANDOFF_COOKIE);
  res.setHeader('set-cookie', setCookie(HANDOFF_COOKIE, '', 0, 'Strict'));
  if (!token) throw new AccessDeniedError('no single sign-on login to finish in this browser: log in again');
  const s = await api.getSession(token);
  const expiresIn = s.expires ? Math.max(0, Math.floor((Date.parse(s.expires) - Date.now()) / 1000)) : 0;
  return { token, user: s.user, expires_in: expiresIn };
}
