/**
 * The proxy's browser UI in real headless Chromium over the proxy's real
 * HTTPS listener: sign-up with password and TOTP from the page's QR code
 * secret, login, the node list with labels and the logins each node offers,
 * logout; every page named after the product and the cluster, with its
 * favicon, and no CSP violation; refusals of used and expired sign-up links,
 * wrong passwords and wrong or replayed codes. Then the web session API
 * itself: bearer checks, bad bodies, CSP headers, the favicon; and a page on
 * another site that tries to log in through the user's browser. The cluster
 * has two nodes: test-auth (env=prod) and staging-1 (env=staging).
 *
 * TOTP codes are computed at the moment of use for the current step (sign-up)
 * and the next one (login): the server accepts ±1 step and never a step at or
 * before the last one used, so these are accepted even across a step boundary.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Browser, Page } from 'playwright-core';
import { totp } from '../../runtime/auth/totp';
import { cspViolations, goto, launchChromium, newContext, openUserMenu, recordCspViolations } from '../helpers/browser';
import { startCluster, TestAuth, TestNode } from '../helpers/cluster';
import { tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { webApiRequest, WebRequestOptions } from '../helpers/webapi';

const GENERIC = 'invalid username, password or second factor';
const PASSWORD = 'correct horse battery';
const USED_OR_EXPIRED = /invalid, has expired or has been used already/;
/** The bearer token the page keeps in sessionStorage (the test code has no DOM types). */
const storedToken = (page: Page) => page.evaluate<string | null>("sessionStorage.getItem('teleport.token')");
const nextStepCode = (secret: string) => totp(secret, { timeMs: Date.now() + 30_000 });
const FAVICON_LINK = '<link rel="icon" href="/web/favicon.svg" type="image/svg+xml">';
const STAGING = 'staging-1';

/** The width of the image the page's `<link rel="icon">` names, loaded in the page (so under its CSP). */
const faviconWidth = (page: Page) =>
  page.evaluate<number>(`new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth);
    img.onerror = () => reject(new Error('the favicon did not load'));
    img.src = document.querySelector('link[rel="icon"]').href;
  })`);

/** Waits for the page to name the cluster in its header, then checks the title, the product name and the favicon. */
const expectBranded = async (page: Page, title: string) => {
  await page.locator('#cluster', { hasText: 'example.com' }).waitFor();
  expect(await page.title()).toBe(`${title} · example.com · Teleport`);
  expect(await page.textContent('header .brand')).toBe('Teleport');
  expect(await page.$eval('header .brand img', (img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBeGreaterThan(0);
  expect(await faviconWidth(page)).toBeGreaterThan(0);
  expect(await cspViolations(page)).toEqual([]);
};

describe('proxy web UI in headless Chromium', () => {
  let c: TestAuth;
  let browser: Browser;
  let base: string;
  let ca: string;
  let work: string;
  let staging: TestNode;

  /** A request to the proxy's web listener, trusting exactly its self-signed certificate. */
  const request = (method: string, p: string, opts: WebRequestOptions = {}) => webApiRequest(base, ca, method, p, opts);

  /** `tctl users add`, returning the sign-up page's path. */
  const addUser = async (...args: string[]) => {
    const out = await c.tctlOk('users', 'add', ...args);
    return new URL(/https:\/\/\S+\/web\/newuser\/[0-9a-f]{32}/.exec(out)![0]).pathname;
  };

  /** Fails on any Content-Security-Policy violation or script error in the page. */
  const watchPage = (page: Page) => {
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[0-9]/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    return problems;
  };

  beforeAll(async () => {
    work = tempDir('web-ui-');
    c = await startCluster({ proxy: {}, labels: { env: 'prod', team: 'web' }, tokens: ['node:web-ui-node-token'] });
    staging = await TestNode.create(c, { token: 'web-ui-node-token', caPin: await c.caPin(), nodeName: STAGING, labels: 'env=staging' });
    staging.start();
    await staging.ready();
    await waitFor('the staging node to announce itself', async () => (await c.tctlOk('nodes', 'ls')).includes(STAGING));
    base = `https://127.0.0.1:${c.proxyPorts!.web}`;
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await staging?.cleanup();
    await c?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN a sign-up URL from tctl WHEN the user completes it in Chromium THEN they log in on the login page, see the nodes with their labels and logins, and log out', async () => {
    const signupPath = await addUser('alice', LOGIN);
    const context = await newContext(browser);
    const page = await context.newPage();
    const problems = watchPage(page);
    await recordCspViolations(page);

    // GIVEN the sign-up page: named after the product and the cluster, the user, a QR code that renders under the CSP, and the secret for manual entry
    await goto(page, base + signupPath);
    await page.locator('#otp-secret').waitFor();
    await expectBranded(page, 'Sign up');
    expect(await page.textContent('#user')).toBe('alice');
    const secret = (await page.textContent('#otp-secret'))!.trim();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const qr = await page.getAttribute('#qr', 'src');
    expect(Buffer.from(qr!.replace(/^data:image\/svg\+xml;base64,/, ''), 'base64').toString()).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
    expect(await page.$eval('#qr', (img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBeGreaterThan(0);
    expect(await page.content()).not.toContain(signupPath.split('/').pop());

    // WHEN the passwords differ or the code is wrong THEN the page says so and the token stays usable
    await page.fill('#password', PASSWORD);
    await page.fill('#password-confirm', 'something else');
    await page.fill('#otp', totp(secret));
    await page.click('#submit');
    await expect(page.locator('#error').textContent()).resolves.toMatch(/do not match/);
    await page.fill('#password-confirm', PASSWORD);
    await page.fill('#otp', totp(secret, { timeMs: Date.now() + 10 * 60_000 }));
    await page.click('#submit');
    await page.locator('#error', { hasText: /invalid second factor code/ }).waitFor();

    // WHEN the form is completed with the current code THEN the account is ready
    const signupCode = totp(secret);
    await page.fill('#otp', signupCode);
    await page.click('#submit');
    await page.locator('#success').waitFor();
    expect(await page.textContent('#success')).toMatch(/account is ready/);
    expect(await page.getAttribute('#login-link', 'href')).toBe('/web/login');

    // WHEN the sign-up link is opened again THEN it is refused
    await goto(page, base + signupPath);
    await page.locator('#error').waitFor();
    expect(await page.textContent('#error')).toMatch(USED_OR_EXPIRED);
    expect(await page.isVisible('#signup-form')).toBe(false);

    // WHEN logging in with a wrong password, a wrong code or the replayed sign-up code THEN each is refused in the page
    await goto(page, `${base}/web/login`);
    await expectBranded(page, 'Log in');
    const tryLogin = async (password: string, code: string) => {
      await page.fill('#username', 'alice');
      await page.fill('#password', password);
      await page.fill('#otp', code);
      await page.click('#login');
    };
    await tryLogin('wrong password!', nextStepCode(secret));
    await page.locator('#error', { hasText: GENERIC }).waitFor();
    await page.evaluate("document.getElementById('error').hidden = true");
    await tryLogin(PASSWORD, totp(secret, { timeMs: Date.now() + 10 * 60_000 }));
    await page.locator('#error', { hasText: GENERIC }).waitFor();
    await page.evaluate("document.getElementById('error').hidden = true");
    await tryLogin(PASSWORD, signupCode);
    await page.locator('#error', { hasText: GENERIC }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/login');
    expect(await storedToken(page)).toBeNull();

    // WHEN logging in with the password and the next code THEN the nodes page lists both nodes (the admin role's '*') with labels and alice's login
    await tryLogin(PASSWORD, nextStepCode(secret));
    await page.waitForURL(`${base}/web/cluster/example.com/nodes`);
    const row = page.locator('#nodes tbody tr', { hasText: 'test-auth' });
    await row.waitFor();
    expect(await row.locator('.addr').textContent()).toBe(`127.0.0.1:${c.nodePort}`);
    expect(await row.locator('.label').allTextContents()).toEqual(['env: prod', 'team: web']);
    expect(await row.locator('.login').allTextContents()).toEqual([`tsh ssh ${LOGIN}@test-auth`]);
    expect(await page.locator('#nodes tbody tr', { hasText: STAGING }).locator('.login').allTextContents()).toEqual([`tsh ssh ${LOGIN}@${STAGING}`]);
    expect(await page.textContent('#whoami')).toBe('alice');
    await expectBranded(page, 'Nodes');
    const token = (await storedToken(page))!;
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const items = (await request('GET', '/webapi/sites/example.com/nodes', { token })).json.items as { hostname: string }[];
    expect(items.sort((a, b) => a.hostname.localeCompare(b.hostname))).toEqual([
      {
        id: expect.any(String),
        siteId: 'example.com',
        hostname: STAGING,
        addr: `127.0.0.1:${staging.port}`,
        tags: [{ name: 'env', value: 'staging' }],
        logins: [LOGIN],
      },
      {
        id: expect.any(String),
        siteId: 'example.com',
        hostname: 'test-auth',
        addr: `127.0.0.1:${c.nodePort}`,
        tags: [
          { name: 'env', value: 'prod' },
          { name: 'team', value: 'web' },
        ],
        logins: [LOGIN],
      },
    ]);

    // WHEN the user logs out (from the user menu) THEN they are back on the login page and the token no longer lists nodes
    await openUserMenu(page);
    await page.click('#logout');
    await page.waitForURL(`${base}/web/login`);
    expect(await storedToken(page)).toBeNull();
    expect((await request('GET', '/webapi/sites/example.com/nodes', { token })).status).toBe(403);
    await page.evaluate(`sessionStorage.setItem('teleport.token', ${JSON.stringify(token)})`);
    await goto(page, `${base}/web`);
    await page.locator('#error', { hasText: /session has expired or was ended/ }).waitFor();
    expect(await page.isVisible('#nodes')).toBe(false);

    // AND without a session the nodes page sends the browser to the login page
    await page.evaluate('sessionStorage.clear()');
    await goto(page, `${base}/web`);
    await page.waitForURL(`${base}/web/login`);
    expect(problems).toEqual([]);
    await context.close();

    const logins = await c.events(['user.login']);
    expect(logins.filter((e) => e.user === 'alice' && e.success === false)).toHaveLength(3);
    expect(logins.filter((e) => e.user === 'alice' && e.success === true)).toHaveLength(1);
  });

  it('GIVEN a sign-up token that has expired WHEN its page is opened THEN the page refuses it', async () => {
    const signupPath = await addUser('carol', LOGIN, '--ttl', '1s');
    const token = signupPath.split('/').pop()!;
    await waitFor('the sign-up token to expire', async () => (await request('GET', `/webapi/signuptokens/${token}`)).status === 404);
    const context = await newContext(browser);
    const page = await context.newPage();
    await goto(page, base + signupPath);
    await page.locator('#error').waitFor();
    expect(await page.textContent('#error')).toMatch(USED_OR_EXPIRED);
    // AND it says how to get a new link
    expect(await page.textContent('#error')).toContain('they run "tctl users reset <your user name>" and send you the link it prints');
    expect(await page.isVisible('#signup')).toBe(false);
    await context.close();
  });

  it('GIVEN a user whose role allows other nodes and a 1h session limit WHEN they use the web session API THEN bearer tokens are checked and bad bodies get 400 (malformed, invalid) or 413 (too large)', async () => {
    // GIVEN bob, whose role only sees env=staging nodes and caps sessions at 1h
    const roleFile = path.join(work, 'staging.yaml');
    fs.writeFileSync(
      roleFile,
      `kind: role\nversion: v3\nmetadata:\n  name: staging-only\nspec:\n  options:\n    max_session_ttl: 1h\n  allow:\n    logins: [${LOGIN}]\n    node_labels:\n      env: staging\n`,
    );
    await c.tctlOk('create', roleFile);
    const signupToken = (await addUser('bob', LOGIN, '--roles', 'staging-only')).split('/').pop()!;
    const info = await request('GET', `/webapi/signuptokens/${signupToken}`);
    expect(info.json).toMatchObject({ user: 'bob', otp_url: expect.stringMatching(/^otpauth:\/\/totp\//), qr_code: expect.stringMatching(/^data:image\/svg\+xml;base64,/) });
    expect((await request('POST', `/webapi/signuptokens/${signupToken}`, { body: { password: PASSWORD, otp_token: totp(info.json.otp_secret) } })).status).toBe(200);

    // WHEN bodies are malformed, carry unknown fields or are too large THEN 400, 400 and 413, and the proxy keeps serving
    const malformed = await request('POST', '/webapi/sessions', { body: '{"user": ' });
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.message).toMatch(/not valid JSON/);
    expect((await request('POST', '/webapi/sessions', { body: { user: 'bob', pass: PASSWORD, admin: true } })).status).toBe(400);
    expect((await request('POST', '/webapi/sessions', { body: { user: 'bob' } })).status).toBe(400);
    const big = await request('POST', '/webapi/sessions', { body: JSON.stringify({ user: 'bob', pass: 'x'.repeat(200_000) }) });
    expect(big.status).toBe(413);
    expect((await request('GET', '/webapi/ping')).status).toBe(200);

    // WHEN the password is wrong THEN 403 with the generic message
    const wrong = await request('POST', '/webapi/sessions', { body: { user: 'bob', pass: 'not his password', second_factor_token: nextStepCode(info.json.otp_secret) } });
    expect(wrong.status).toBe(403);
    expect(wrong.json.error.message).toBe(GENERIC);

    // WHEN bob logs in THEN he gets a bearer token for at most his role's 1h, and sees the env=staging node only
    const created = await request('POST', '/webapi/sessions', { body: { user: 'bob', pass: PASSWORD, second_factor_token: nextStepCode(info.json.otp_secret) } });
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({ token: expect.stringMatching(/^[0-9a-f]{64}$/), token_type: 'Bearer', user: 'bob' });
    expect(created.json.expires_in).toBeGreaterThan(3500);
    expect(created.json.expires_in).toBeLessThanOrEqual(3600);
    const token = created.json.token as string;
    expect(created.headers['cache-control']).toBe('no-store');
    const listed = async (p: string) => ((await request('GET', p, { token })).json.items as { hostname: string; logins: string[] }[]).map((n) => [n.hostname, n.logins]);
    expect(await listed('/webapi/sites/example.com/nodes')).toEqual([[STAGING, [LOGIN]]]);
    expect(await listed('/webapi/sites/example.com/namespaces/default/nodes')).toEqual([[STAGING, [LOGIN]]]);
    expect((await request('GET', '/webapi/sites', { token })).json.items).toEqual([{ name: 'example.com', status: 'online' }]);
    expect((await request('GET', '/webapi/sites/other.example.com/nodes', { token })).status).toBe(404);

    // WHEN the bearer is missing, garbage, of another scheme or unknown THEN 401/403
    const missing = await request('GET', '/webapi/sites/example.com/nodes');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    expect((await request('GET', '/webapi/sites/example.com/nodes', { token: 'garbage' })).status).toBe(403);
    expect((await request('GET', '/webapi/sites/example.com/nodes', { headers: { authorization: `Basic ${token}` } })).status).toBe(403);
    expect((await request('GET', '/webapi/sites/example.com/nodes', { token: token.replace(/^./, (ch) => (ch === 'a' ? 'b' : 'a')) })).status).toBe(403);
    expect((await request('GET', '/webapi/sites/other.example.com/nodes', { token: 'f'.repeat(64) })).status).toBe(403);

    // WHEN bob logs out THEN his token is refused everywhere, logging out again included
    expect((await request('DELETE', '/webapi/sessions/current', { token })).status).toBe(200);
    expect((await request('GET', '/webapi/sites/example.com/nodes', { token })).status).toBe(403);
    expect((await request('GET', '/webapi/sites', { token })).status).toBe(403);
    expect((await request('DELETE', '/webapi/sessions/current', { token })).status).toBe(403);
    expect((await request('GET', '/webapi/ping')).status).toBe(200);
  });

  it('GIVEN a user whose role allows env=prod with one login and denies another WHEN they open the node list THEN it offers that login on the prod node only, and the offered command works while the others are refused', async () => {
    // GIVEN dave: his role allows LOGIN and "auditor" on env=prod and denies "auditor"; his own traits login is not in the role
    const roleFile = path.join(work, 'prod-ops.yaml');
    fs.writeFileSync(
      roleFile,
      `kind: role\nversion: v3\nmetadata:\n  name: prod-ops\nspec:\n  allow:\n    logins: [${LOGIN}, auditor]\n    node_labels:\n      env: prod\n  deny:\n    logins: [auditor]\n`,
    );
    await c.tctlOk('create', roleFile);
    const dave = await TshUser.signUp(c, 'dave', ['dave-trait'], { roles: ['prod-ops'] });
    // and erin, who holds the same role and traits, for tsh (each user has only two TOTP steps at hand: sign-up and one login)
    const erin = await TshUser.signUp(c, 'erin', ['dave-trait'], { roles: ['prod-ops'] });
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const problems = watchPage(page);
      await recordCspViolations(page);

      // WHEN dave logs in in the browser
      await goto(page, `${base}/web/login`);
      await page.fill('#username', 'dave');
      await page.fill('#password', dave.password);
      await page.fill('#otp', dave.nextCode());
      await page.click('#login');
      await page.waitForURL(`${base}/web/cluster/example.com/nodes`);

      // THEN the prod node offers exactly LOGIN, and the staging node is not listed
      await page.locator('#nodes tbody tr').first().waitFor();
      expect(await page.locator('#nodes tbody tr .hostname').allTextContents()).toEqual(['test-auth']);
      expect(await page.locator('#nodes tbody tr .login').allTextContents()).toEqual([`tsh ssh ${LOGIN}@test-auth`]);
      await expectBranded(page, 'Nodes');
      expect(problems).toEqual([]);

      // AND the API answers the same, with `logins` per node
      const nodes = await request('GET', '/webapi/sites/example.com/nodes', { token: (await storedToken(page))! });
      expect(nodes.json.items.map((n: { hostname: string; logins: string[] }) => [n.hostname, n.logins])).toEqual([['test-auth', [LOGIN]]]);

      // WHEN the offered command runs with tsh (as erin) THEN it works; the logins not offered are refused
      await erin.login();
      const ok = await erin.tsh(['ssh', `${LOGIN}@test-auth`, 'echo', 'offered-login-works']);
      expect([ok.code, ok.stdout.trim()]).toEqual([0, 'offered-login-works']);
      for (const [login, node] of [['auditor', 'test-auth'], ['dave-trait', 'test-auth'], [LOGIN, STAGING]]) {
        const refused = await erin.tsh(['ssh', `${login}@${node}`, 'echo', 'should-not-run']);
        expect(refused.code).not.toBe(0);
        expect(refused.stdout).not.toContain('should-not-run');
      }
    } finally {
      await context.close();
      dave.cleanup();
      erin.cleanup();
    }
  });

  it('GIVEN the pages THEN they carry a strict CSP, hold no inline script, reference the favicon, and nothing else under the folder is served', async () => {
    for (const p of ['/web', '/web/login', '/web/newuser/0123456789abcdef0123456789abcdef', '/web/cluster/example.com/nodes', '/web/audit']) {
      const r = await request('GET', p);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(r.text).toContain(FAVICON_LINK);
      expect(r.text).toMatch(/<title>[^<]+ · Teleport<\/title>/);
      expect(r.headers['content-security-policy']).toMatch(/default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'/);
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(r.text).not.toMatch(/\sstyle=|\son[a-z]+=/i);
    }
    // (the logged-in pages' shared navigation is put in when served, the page's own link marked current)
    const nodesPage = (await request('GET', '/web')).text;
    expect(nodesPage).toContain('<a id="nodes-link" aria-current="page" href="/web">Nodes</a>');
    expect(nodesPage).toContain('<button id="user-menu-button"');
    expect(nodesPage).not.toContain('{{');
    expect((await request('GET', '/web/audit')).text).toContain('<a id="audit-link" aria-current="page" href="/web/audit">Audit log</a>');
    expect((await request('GET', '/web/nav.html')).status).toBe(404);
    const root = await request('GET', '/');
    expect(root.status).toBe(302);
    expect(root.headers.location).toBe('/web');
    expect((await request('GET', '/web/app.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await request('GET', '/web/audit.js')).headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await request('GET', '/web/app.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    const favicon = await request('GET', '/web/favicon.svg');
    expect([favicon.status, favicon.headers['content-type'], favicon.headers['x-content-type-options']]).toEqual([200, 'image/svg+xml', 'nosniff']);
    expect(favicon.text).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>\s*$/);
    expect(favicon.text).not.toMatch(/<script|\shref=|\sstyle=|<style/i); // self-contained and inert
    expect((await request('GET', '/webapi/ping')).json.cluster_name).toBe('example.com');
    expect((await request('GET', '/web/nodes.html')).status).toBe(404);
    expect((await request('GET', '/web/%2e%2e/%2e%2e/package.json')).status).toBe(404);
    expect((await request('POST', '/web/login', { body: {} })).status).toBe(404);
  });

  it('GIVEN a page on another site WHEN Chromium submits its text/plain form or no-cors fetch to the login APIs THEN they are refused and reach no user', async () => {
    // GIVEN an attacker's page on another origin, with the classic JSON-in-a-text/plain-form trick
    // (the body is `name=value`: {"user":"csrf-form","pass":"guess="}) and a no-cors fetch, both valid login bodies
    const field = (v: string) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    const page = `<!doctype html><form id="f" method="POST" enctype="text/plain" action="${base}/webapi/sessions">
      <input name="${field('{"user":"csrf-form","pass":"guess')}" value="${field('"}')}"></form>
      <script>
        fetch(${JSON.stringify(base + '/webapi/sessions')}, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' },
          body: JSON.stringify({ user: 'csrf-fetch', pass: 'guess-guess' }) })
          .finally(() => { document.title = 'sent'; });
      </script>`;
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const context = await newContext(browser);
    try {
      const tab = await context.newPage();
      await goto(tab, `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      await tab.waitForFunction('document.title === "sent"');
      // WHEN the form is submitted THEN the proxy refuses it as cross-site
      const [answer] = await Promise.all([tab.waitForResponse(`${base}/webapi/sessions`), tab.evaluate("document.getElementById('f').submit()")]);
      expect(answer.status()).toBe(403);
      expect(await answer.text()).toMatch(/cross-site requests are refused/);
      // THEN no login attempt reached the auth server, so none counts towards a lockout
      expect((await c.events(['user.login'])).filter((e) => String(e.user).startsWith('csrf-'))).toEqual([]);
    } finally {
      await context.close();
      await new Promise<void>((resolve) => evil.close(() => resolve()));
    }
  });
});
