/**
 * tsh's side of a single sign-on login (runtime/client/sso.ts) against a stand-in proxy on loopback:
 * its callback listens on 127.0.0.1 only, turns away another state, another path and an answer not
 * sealed with its one-time key (and goes on waiting), and takes the one expected answer, or the
 * proxy's reason for a refusal.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { sealForClient } from '../../../runtime/auth/sso/logins';
import { ssoLogin } from '../../../runtime/client/sso';
import type { SshLoginResponse } from '../../../runtime/client/weblogin';

const ANSWER: SshLoginResponse = { username: 'octo', cert: 'Y2VydA==', host_signers: [] };

describe('tsh single sign-on callback', () => {
  let proxy: http.Server;
  let port: number;
  /** What tsh sent with its console login request. */
  let asked: Promise<{ redirect_url: string; secret_key: string }>;
  let heard: (b: { redirect_url: string; secret_key: string }) => void;
  const STATE = 'a'.repeat(64);

  beforeEach(() => {
    asked = new Promise((resolve) => (heard = resolve));
  });
  beforeAll(async () => {
    proxy = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        heard(JSON.parse(body));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ redirect_url: 'https://idp.example.com/auth?state=' + STATE, state: STATE }));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
    port = (proxy.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  });

  const start = () => {
    const lines: string[] = [];
    const login = ssoLogin(
      { scheme: 'http', host: '127.0.0.1', port },
      { connector: { kind: 'github', name: 'github' }, publicKey: 'cHVi', tlsPublicKey: 'dGxz', browser: 'none', out: (l) => lines.push(l), timeoutMs: 30_000 },
    );
    return { login, lines };
  };

  test('GIVEN tsh waiting on its callback WHEN other states, paths and answers come first THEN they are turned away, and the sealed answer of its state is taken', async () => {
    // GIVEN tsh asked the proxy to begin a login and printed the URL
    const { login, lines } = start();
    const body = await asked;
    const callback = new URL(body.redirect_url);
    expect(callback.hostname).toBe('127.0.0.1');
    const key = Buffer.from(body.secret_key, 'base64url');
    expect(key).toHaveLength(32);
    const sealed = sealForClient(body.secret_key, ANSWER);
    const hit = async (pathAndQuery: string) => (await fetch(`${callback.origin}${pathAndQuery}`)).status;

    // WHEN another state, another path, or an answer sealed with another key come THEN 400 each
    expect(await hit(`/callback?state=${'b'.repeat(64)}&response=${sealed}`)).toBe(400);
    expect(await hit(`/other?state=${STATE}&response=${sealed}`)).toBe(400);
    expect(await hit(`/callback?state=${STATE}&response=${sealForClient(randomBytes(32).toString('base64url'), { ...ANSWER, username: 'mallory' })}`)).toBe(400);

    // THEN the expected answer is taken
    expect(await hit(`/callback?state=${STATE}&response=${sealed}`)).toBe(200);
    await expect(login).resolves.toEqual(ANSWER);
    expect(lines.join('')).toContain('Open this URL in a browser to log in:\nhttps://idp.example.com/auth?state=');
  });

  test('GIVEN tsh waiting WHEN the proxy sends a refusal with its state THEN the login fails with the reason', async () => {
    const { login } = start();
    const outcome = login.then(
      () => 'logged in',
      (err: Error) => err.message,
    );
    const callback = new URL((await asked).redirect_url);
    const res = await fetch(`${callback.origin}/callback?state=${STATE}&error=${encodeURIComponent('not a member of any team')}`);
    expect(res.status).toBe(200);
    expect(await outcome).toBe('single sign-on login failed: not a member of any team');
  });
});
