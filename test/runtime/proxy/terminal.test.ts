/**
 * The browser terminal's pieces that need no cluster: the session cookie, which
 * upgrade requests are the terminal's, and the terminal page and xterm.js files
 * as the web UI serves them (the page's nonce, the allow-list).
 * The terminal itself is tested end to end in test/e2e/web-terminal.test.ts.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { CONTENT_SECURITY_POLICY, WebUi } from '../../../runtime/proxy/pages';
import { isTerminalRequest, SESSION_COOKIE, sessionCookie, sessionCookieHeader } from '../../../runtime/proxy/terminal';
import { logger } from '../../../runtime/utils/logger';

const TOKEN = 'ab'.repeat(32);
const withHeaders = (url: string, headers: http.IncomingHttpHeaders = {}) => ({ url, headers }) as unknown as http.IncomingMessage;

describe('the web session cookie', () => {
  test('GIVEN a new session or a logout THEN the cookie is host-only, Secure, HttpOnly and SameSite=Strict, for the session or removed', () => {
    expect(sessionCookieHeader(TOKEN, 3600)).toBe(`${SESSION_COOKIE}=${TOKEN}; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Strict`);
    expect(sessionCookieHeader('', 0)).toBe(`${SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict`);
  });

  test('GIVEN a Cookie header THEN only the session cookie is read, among others, and nothing when it is absent', () => {
    expect(sessionCookie(withHeaders('/', { cookie: `a=1; ${SESSION_COOKIE}=${TOKEN}; b=2` }))).toBe(TOKEN);
    expect(sessionCookie(withHeaders('/', { cookie: `x${SESSION_COOKIE}=${TOKEN}` }))).toBeUndefined();
    expect(sessionCookie(withHeaders('/', { cookie: 'a=1' }))).toBeUndefined();
    expect(sessionCookie(withHeaders('/'))).toBeUndefined();
  });
});

describe('which upgrade requests are the terminal', () => {
  test('GIVEN request targets THEN /webapi/sites/<site>/connect (also under /v1) and nothing else, and a target that is no path is not', () => {
    expect(isTerminalRequest(withHeaders('/webapi/sites/example.com/connect?params=%7B%7D'))).toBe(true);
    expect(isTerminalRequest(withHeaders('/v1/webapi/sites/example.com/connect'))).toBe(true);
    expect(isTerminalRequest(withHeaders('/webapi/sites/example.com/connect/x'))).toBe(false);
    expect(isTerminalRequest(withHeaders('/webapi/auth/connect'))).toBe(false);
    expect(isTerminalRequest(withHeaders('http://evil.example/webapi/sites/x/connect'))).toBe(false);
  });
});

describe('the terminal page and the xterm.js files', () => {
  let server: http.Server;
  let base: string;
  const get = (p: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }>((resolve, reject) => {
      http
        .get(base + p, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
        })
        .on('error', reject);
    });

  beforeAll(async () => {
    const ui = new WebUi(logger('test'));
    server = http.createServer((req, res) => {
      res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
      void ui.serve(new URL(req.url!, 'http://x').pathname, req, res).then((served) => {
        if (!served) res.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('GIVEN the terminal page THEN each response has its own style nonce, in the CSP header and the page, and scripts stay self-only', async () => {
    const page = '/web/cluster/example.com/console/node/0dd42eba-e285-4c9e-9e53-e902309d12a1/root';
    const [one, two] = [await get(page), await get(page)];
    const nonceOf = (r: { headers: http.IncomingHttpHeaders }) => /style-src 'self' 'nonce-([A-Za-z0-9+/=]{24})'/.exec(String(r.headers['content-security-policy']))?.[1];
    expect(one.status).toBe(200);
    expect(nonceOf(one)).toBeDefined();
    expect(nonceOf(two)).toBeDefined();
    expect(nonceOf(one)).not.toBe(nonceOf(two));
    expect(one.text).toContain(`<meta name="csp-nonce" content="${nonceOf(one)}">`);
    expect(one.text).not.toContain('{{CSP_NONCE}}');
    const csp = String(one.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain("style-src-attr 'unsafe-inline'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(one.text).not.toMatch(/<script(?![^>]*\bsrc=)/);
    // AND the other pages keep the strict policy
    expect((await get('/web/login')).headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
  });

  test('GIVEN the allow-list THEN xterm.js, its stylesheet and the fit addon are served from the installed packages, and nothing else beside them', async () => {
    const js = await get('/web/xterm/xterm.js');
    expect(js).toMatchObject({ status: 200, headers: { 'content-type': 'text/javascript; charset=utf-8' } });
    expect(js.text).toContain('Terminal');
    expect((await get('/web/xterm/xterm.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    expect((await get('/web/xterm/addon-fit.js')).text).toContain('FitAddon');
    for (const p of ['/web/xterm/xterm.js.map', '/web/xterm/package.json', '/web/xterm/', '/web/node_modules/ws/index.js']) {
      expect((await get(p)).status).toBe(404);
    }
  });
});
