/**
 * `tsh login --auth=<connector>`: single sign-on through the browser, as
 * Teleport's tsh does it. tsh listens on 127.0.0.1 (a random port), asks the
 * proxy to begin a console login (`POST /webapi/{oidc,github}/login/console`
 * with its public keys, that callback and a one-time 32-byte key), opens the
 * browser at the provider (or, with `--browser=none`, prints the URL), and
 * waits for the browser to come back to the callback. Only the one expected
 * `state` is taken; the certificates come sealed with the one-time key
 * (AES-256-GCM), so nothing on the way can read or change them. A refused
 * login comes back as an error with the reason. Gives up after 3 minutes.
 */
import { spawn } from 'node:child_process';
import { createDecipheriv, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AccessDeniedError, BadParameterError, ConnectionProblemError } from '../utils/errors';
import { constantTimeEqual } from '../utils/secrets';
import { SshLoginResponse, webRequest, WebClientOptions } from './weblogin';

export const SSO_LOGIN_TIMEOUT_MS = 3 * 60_000;

export interface SsoConnector {
  kind: 'oidc' | 'github';
  name: string;
}

export interface SsoLoginOptions {
  connector: SsoConnector;
  /** authorized_keys line, base64. */
  publicKey: string;
  /** PEM SPKI, base64. */
  tlsPublicKey: string;
  /** Nanoseconds. */
  certTtl?: number;
  /** `none`: print the URL only; otherwise open the system's browser too. */
  browser: 'default' | 'none';
  /** Where the URL to open is written. */
  out: (line: string) => void;
  timeoutMs?: number;
}

/** Opens `url` in the system's browser, if there is one; the URL is printed anyway. */
function openBrowser(url: string): void {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  try {
    const child = spawn(cmd, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // no browser: the URL is printed
  }
}

/** The sealed login answer opened with the one-time key; undefined when it was not sealed with it. */
export function openSealed(secretKey: Buffer, sealed: string): SshLoginResponse | undefined {
  try {
    const raw = Buffer.from(sealed, 'base64url');
    if (raw.length < 12 + 16) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', secretKey, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    const text = Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
    return JSON.parse(text) as SshLoginResponse;
  } catch {
    return undefined;
  }
}

const page = (res: http.ServerResponse, status: number, text: string) => {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(text + '\n');
};

/** Runs the browser login; resolves the proxy's login answer (certificates and host CAs). */
export async function ssoLogin(web: WebClientOptions, opts: SsoLoginOptions): Promise<SshLoginResponse> {
  const secretKey = randomBytes(32);
  let expectedState: string | undefined;
  let settle!: { resolve: (r: SshLoginResponse) => void; reject: (e: Error) => void };
  const result = new Promise<SshLoginResponse>((resolve, reject) => (settle = { resolve, reject }));
  // Awaited once the login has begun; a timeout before then is not an unhandled rejection.
  result.catch(() => undefined);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const state = url.searchParams.get('state') ?? '';
    // Anything but the callback of this login (another state, another path) is turned away; the login goes on waiting.
    if (req.method !== 'GET' || url.pathname !== '/callback' || !expectedState || !constantTimeEqual(state, expectedState)) {
      return page(res, 400, 'This is not the login tsh is waiting for.');
    }
    const error = url.searchParams.get('error');
    if (error !== null) {
      page(res, 200, `Login failed: ${error}\nYou can close this window.`);
      return settle.reject(new AccessDeniedError(`single sign-on login failed: ${error}`));
    }
    const answer = openSealed(secretKey, url.searchParams.get('response') ?? '');
    if (!answer) return page(res, 400, 'This is not the login tsh is waiting for.');
    page(res, 200, 'Logged in. You can close this window and return to the terminal.');
    settle.resolve(answer);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const timeoutMs = opts.timeoutMs ?? SSO_LOGIN_TIMEOUT_MS;
  const timer = setTimeout(() => settle.reject(new ConnectionProblemError(`no answer from the browser within ${Math.round(timeoutMs / 1000)}s: the login was not completed`)), timeoutMs);
  try {
    const port = (server.address() as AddressInfo).port;
    const begun = await webRequest<{ redirect_url?: unknown; state?: unknown }>(web, 'POST', `/webapi/${opts.connector.kind}/login/console`, {
      connector_id: opts.connector.name,
      redirect_url: `http://127.0.0.1:${port}/callback`,
      secret_key: secretKey.toString('base64url'),
      public_key: opts.publicKey,
      tls_public_key: opts.tlsPublicKey,
      ...(opts.certTtl ? { cert_ttl: opts.certTtl } : {}),
    });
    if (typeof begun.redirect_url !== 'string' || !/^https?:\/\//.test(begun.redirect_url) || typeof begun.state !== 'string') {
      throw new BadParameterError('the proxy did not answer the login request with a URL to open');
    }
    expectedState = begun.state;
    if (opts.browser === 'none') opts.out(`Open this URL in a browser to log in:\n${begun.redirect_url}\n`);
    else {
      opts.out(`If the browser does not open, open this URL to log in:\n${begun.redirect_url}\n`);
      openBrowser(begun.redirect_url);
    }
    return await result;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
