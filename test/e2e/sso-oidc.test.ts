/**
 * Single sign-on with OpenID Connect, end to end: a real OpenID provider (the certified
 * `oidc-provider` package, its own process), a cluster (auth + proxy + node, `teleport start`),
 * `tctl create` of the connector, the web login in Chromium, and `tsh login --auth=<connector>
 * --browser=none` whose printed URL Chromium opens. Claims map to roles and those roles decide
 * node access; a tampered state, a replayed callback, a browser that did not begin the login
 * and a provider that names another issuer are refused and audited.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Browser, Page } from 'playwright-core';
import { axeViolations, failing, formatViolations } from '../helpers/axe';
import { cspViolations, goto, launchChromium, newContext, recordCspViolations } from '../helpers/browser';
import { startCluster, TestAuth } from '../helpers/cluster';
import { TestOidcProvider } from '../helpers/oidcprovider';
import { cliPath, Daemon, runCli, tempDir } from '../helpers/proc';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../runtime/sshcert';
import { LOGIN } from '../helpers/sshd';
import { webApiRequest } from '../helpers/webapi';

const SECRET = 'the-client-secret-of-teleport';

const role = (name: string, labels: string) =>
  `kind: role\nversion: v3\nmetadata:\n  name: ${name}\nspec:\n  allow:\n    logins: [${LOGIN}]\n    node_labels: {${labels}}\n  deny: {}\n`;

describe('single sign-on with OIDC', () => {
  let c: TestAuth;
  let idp: TestOidcProvider;
  let browser: Browser;
  let work: string;
  let ca: string;
  const homes: string[] = [];

  const connector = (name: string, issuer: string) =>
    [
      'kind: oidc',
      'version: v2',
      'metadata:',
      `  name: ${name}`,
      'spec:',
      `  issuer_url: ${issuer}`,
      '  client_id: teleport',
      `  client_secret: ${SECRET}`,
      `  redirect_url: ${c.webUrl()}/v1/webapi/oidc/callback`,
      '  display: Corporate SSO',
      '  scope: [email, groups]',
      '  claims_to_roles:',
      '    - {claim: groups, value: ops, roles: [ops]}',
      '    - {claim: groups, value: viewers, roles: [viewer]}',
    ].join('\n') + '\n';

  const tsh = (home: string, args: string[]) => runCli('tsh', args, { env: { HOME: home, TELEPORT_HOME: '' } });

  /** Logs in through the provider as `account` in a fresh browser profile; the page ends where the login lands. */
  async function webLogin(account: string): Promise<Page> {
    const page = await (await newContext(browser)).newPage();
    await goto(page, `${c.webUrl()}/web/login`);
    await page.locator('a.connector', { hasText: 'Corporate SSO' }).click();
    await idp.login(page, account);
    return page;
  }

  const callbackAnswer = (url: string) => {
    const u = new URL(url);
    return webApiRequest(c.webUrl(), ca, 'GET', u.pathname + u.search);
  };

  const ssoLogins = async () => (await c.events(['user.login'])).filter((e) => e.method === 'oidc');

  beforeAll(async () => {
    c = await startCluster({ proxy: {}, authExtra: ['authentication:', '  type: oidc', '  connector_name: corp'] });
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    idp = await TestOidcProvider.start({
      client: { client_id: 'teleport', client_secret: SECRET, redirect_uri: `${c.webUrl()}/v1/webapi/oidc/callback` },
      accounts: { alice: { email: 'alice@example.com', groups: ['ops'] }, bob: { email: 'bob@example.com', groups: ['viewers'] }, mallory: { email: 'mallory@example.com', groups: ['nobody'] } },
    });
    browser = await launchChromium();
    work = tempDir('sso-oidc-');
    fs.writeFileSync(path.join(work, 'roles.yaml'), `${role('ops', "'*': '*'")}---\n${role('viewer', 'env: nowhere')}`);
    await c.tctlOk('create', path.join(work, 'roles.yaml'));
    fs.writeFileSync(path.join(work, 'corp.yaml'), connector('corp', idp.issuer));
    await c.tctlOk('create', path.join(work, 'corp.yaml'));
  });
  afterAll(async () => {
    await browser?.close();
    await idp?.stop();
    await c?.cleanup();
    for (const h of [work, ...homes]) if (h) fs.rmSync(h, { recursive: true, force: true });
  });

  it('GIVEN a connector made with tctl create WHEN tctl get shows it THEN the client secret only appears with --with-secrets', async () => {
    const shown = await c.tctlOk('get', 'oidc/corp');
    expect(shown).toMatch(/issuer_url: http:\/\/127\.0\.0\.1:\d+/);
    expect(shown).not.toContain(SECRET);
    expect(await c.tctlOk('get', 'oidc', '--with-secrets')).toContain(`client_secret: ${SECRET}`);
  });

  it('GIVEN connectors WHEN the login page shows them THEN it passes the accessibility check and breaks no content security rule', async () => {
    const context = await newContext(browser);
    await recordCspViolations(context);
    const page = await context.newPage();
    await goto(page, `${c.webUrl()}/web/login`);
    await page.locator('a.connector', { hasText: 'Corporate SSO' }).waitFor();
    expect(await page.locator('#login-form').isVisible()).toBe(true);
    expect(formatViolations('login with connectors', failing(await axeViolations(page)))).toBe('');
    expect(await cspViolations(page)).toEqual([]);
    await context.close();
  });

  it('GIVEN the web login page WHEN a user of group ops logs in with the connector THEN they land on the node list, and the login is audited with the connector', async () => {
    const page = await webLogin('alice');
    await page.waitForURL(/\/web\/cluster\/example\.com\/nodes$/);
    await expect(page.locator('td', { hasText: 'test-auth' }).first().textContent()).resolves.toContain('test-auth');
    const ok = (await ssoLogins()).find((e) => e.success === true && e.user === 'alice@example.com');
    expect(ok).toMatchObject({ connector: 'corp', code: 'T1001I' });
    await page.context().close();
  });

  it('GIVEN tsh login --auth=corp --browser=none WHEN the printed URL is opened and the user logs in THEN tsh has certificates whose roles decide node access', async () => {
    // GIVEN tsh waits on its localhost callback and prints the provider's URL
    const home = tempDir('tsh-alice-');
    homes.push(home);
    const login = Daemon.spawn(process.execPath, [cliPath('tsh'), 'login', '--insecure', `--proxy=${c.webUrl()},${c.proxyPorts!.ssh}`, '--auth=corp', '--browser=none'], { HOME: home, TELEPORT_HOME: '' });
    try {
      await login.waitForOutput(/Open this URL in a browser to log in:\n(\S+)/);
      const url = /Open this URL in a browser to log in:\n(\S+)/.exec(login.stdout + login.stderr)![1];
      expect(url.startsWith(idp.issuer)).toBe(true);
      expect(new URL(url).searchParams.get('code_challenge_method')).toBe('S256');
      // WHEN the user logs in at the provider
      const page = await (await newContext(browser)).newPage();
      await goto(page, url);
      await idp.login(page, 'alice');
      await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/callback/);
      expect(await page.textContent('body')).toContain('Logged in');
      await page.context().close();
      // THEN tsh logs in as the provider's user
      expect(await login.exited).toBe(0);
    } finally {
      await login.stop();
    }
    expect(login.stdout).toMatch(/Logged in as:\s+alice@example\.com/);
    // AND the role the claims gave lets them on the node
    const ssh = await tsh(home, ['ssh', `${LOGIN}@test-auth`, 'echo sso-works']);
    expect(ssh.stdout).toBe('sso-works\n');

    // AND the user lives as long as the certificate, and cannot get a password
    expect(await c.tctlOk('get', 'user/alice@example.com')).toMatch(/expires: /);
    const reset = await c.tctl('users', 'reset', 'alice@example.com');
    expect(reset.code).not.toBe(0);
    expect(reset.stderr).toContain('single sign-on');
  });

  it('GIVEN an SSO user WHEN they try a password at the web login THEN it is refused and the audit log says why', async () => {
    const r = await webApiRequest(c.webUrl(), ca, 'POST', '/webapi/sessions', { body: { user: 'alice@example.com', pass: 'any password at all' } });
    expect(r.status).toBe(403);
    const failed = (await c.events(['user.login'])).filter((e) => e.method === 'local' && e.user === 'alice@example.com' && e.success === false);
    expect(failed.map((e) => e.error)).toContainEqual(expect.stringContaining('single sign-on'));
  });

  it('GIVEN a user whose claims give a role without this node WHEN they log in with tsh --auth=oidc THEN the login works but the node refuses them', async () => {
    const home = tempDir('tsh-bob-');
    homes.push(home);
    const login = Daemon.spawn(process.execPath, [cliPath('tsh'), 'login', '--insecure', `--proxy=${c.webUrl()},${c.proxyPorts!.ssh}`, '--auth=oidc', '--browser=none'], { HOME: home, TELEPORT_HOME: '' });
    try {
      await login.waitForOutput(/log in:\n(\S+)/);
      const page = await (await newContext(browser)).newPage();
      await goto(page, /log in:\n(\S+)/.exec(login.stdout + login.stderr)![1]);
      await idp.login(page, 'bob');
      expect(await login.exited).toBe(0);
      await page.context().close();
    } finally {
      await login.stop();
    }
    const ssh = await tsh(home, ['ssh', `${LOGIN}@test-auth`, 'echo should-not-run']);
    expect(ssh.code).not.toBe(0);
    expect(ssh.stdout).not.toContain('should-not-run');
  });

  it('GIVEN a user whose claims match no mapping WHEN they log in with tsh THEN tsh exits with the reason and the failure is audited', async () => {
    const home = tempDir('tsh-mallory-');
    homes.push(home);
    const login = Daemon.spawn(process.execPath, [cliPath('tsh'), 'login', '--insecure', `--proxy=${c.webUrl()},${c.proxyPorts!.ssh}`, '--auth=corp', '--browser=none'], { HOME: home, TELEPORT_HOME: '' });
    try {
      await login.waitForOutput(/log in:\n(\S+)/);
      const page = await (await newContext(browser)).newPage();
      await goto(page, /log in:\n(\S+)/.exec(login.stdout + login.stderr)![1]);
      await idp.login(page, 'mallory');
      expect(await login.exited).not.toBe(0);
      await page.context().close();
    } finally {
      await login.stop();
    }
    expect(login.stderr).toContain('matches no claims_to_roles entry');
    const failed = (await ssoLogins()).find((e) => e.success === false && e.user === 'mallory@example.com');
    expect(failed).toMatchObject({ connector: 'corp', code: 'T1001W' });
  });

  it('GIVEN a web login begun in one browser WHEN another browser completes it at the provider THEN it is refused: the state is bound to the first browser', async () => {
    // GIVEN a browser begins a login: it is at the provider, whose URL carries the state
    const first = await (await newContext(browser)).newPage();
    const authorize: string[] = [];
    first.on('request', (r) => {
      if (r.url().startsWith(`${idp.issuer}/auth?`)) authorize.push(r.url());
    });
    await goto(first, `${c.webUrl()}/web/login`);
    await first.locator('a.connector').first().click();
    await first.locator('input[name="login"]').waitFor();
    expect(authorize).toHaveLength(1);
    // WHEN another browser (no binding cookie) opens that URL and logs in
    const other = await (await newContext(browser)).newPage();
    await goto(other, authorize[0]);
    await idp.login(other, 'alice');
    // THEN it lands on the login page with the reason, without a session
    await other.locator('#error:not([hidden])').waitFor();
    expect(new URL(other.url()).pathname).toBe('/web/login');
    expect(await other.locator('#error').textContent()).toContain('started in another browser');
    expect((await other.context().cookies(c.webUrl())).map((k) => k.name)).not.toContain('__Host-teleport-session');
    await first.context().close();
    await other.context().close();
    const failed = (await ssoLogins()).filter((e) => e.success === false && /another browser/.test(e.error));
    expect(failed.length).toBeGreaterThan(0);
  });

  it('GIVEN a completed web login WHEN its callback is replayed, sent with a tampered state, or its code comes with a new login\'s state THEN each is refused and audited', async () => {
    // GIVEN a login that went through, whose callback URL (state and code) the test saw
    const page = await (await newContext(browser)).newPage();
    const callbacks: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/webapi/oidc/callback')) callbacks.push(r.url());
    });
    await goto(page, `${c.webUrl()}/web/login`);
    await page.locator('a.connector').first().click();
    await idp.login(page, 'alice');
    await page.waitForURL(/\/nodes$/);
    await page.context().close();
    expect(callbacks).toHaveLength(1);
    const before = (await ssoLogins()).filter((e) => e.success === false).length;

    // WHEN the callback is replayed: refused (a state, and so its code, works once)
    const replayed = await callbackAnswer(callbacks[0]);
    expect(replayed.status).toBe(302);
    expect(decodeURIComponent(replayed.headers.location as string)).toContain('unknown, used or expired single sign-on state');

    // WHEN the state is changed: refused
    const u = new URL(callbacks[0]);
    u.searchParams.set('state', 'f'.repeat(64));
    const tampered = await callbackAnswer(u.toString());
    expect(decodeURIComponent(tampered.headers.location as string)).toContain('unknown, used or expired single sign-on state');

    // WHEN the used code comes back with the state of a new login (a console one, begun here): the provider refuses it
    const pair = generateKeyPair('ed25519');
    const begun = await webApiRequest(c.webUrl(), ca, 'POST', '/webapi/oidc/login/console', {
      body: {
        connector_id: 'corp',
        redirect_url: 'http://127.0.0.1:9/callback',
        secret_key: randomBytes(32).toString('base64url'),
        public_key: Buffer.from(formatAuthorizedKey(publicKeyBlob(pair.publicKey))).toString('base64'),
      },
    });
    expect(begun.status).toBe(200);
    const reused = new URL(callbacks[0]);
    reused.searchParams.set('state', begun.json.state);
    const refusedCode = new URL((await callbackAnswer(reused.toString())).headers.location as string);
    expect(refusedCode.origin).toBe('http://127.0.0.1:9');
    expect(refusedCode.searchParams.get('error')).toMatch(/OIDC code exchange: .* answered 400 \(invalid_grant/);

    // THEN the three refusals are in the audit log
    const refusals = (await ssoLogins()).filter((e) => e.success === false);
    expect(refusals.length).toBe(before + 3);
    expect(refusals[refusals.length - 1]).toMatchObject({ connector: 'corp', code: 'T1001W' });
  });

  it('GIVEN a connector whose provider names another issuer WHEN a web login begins THEN it is refused with the reason and audited', async () => {
    fs.writeFileSync(path.join(work, 'wrong.yaml'), connector('wrong', idp.issuer.replace('127.0.0.1', 'localhost')));
    await c.tctlOk('create', path.join(work, 'wrong.yaml'));
    const r = await webApiRequest(c.webUrl(), ca, 'GET', '/v1/webapi/oidc/login/web?connector_id=wrong');
    expect(r.status).toBe(302);
    expect(decodeURIComponent(r.headers.location as string)).toMatch(/sso_error=.*says its issuer is "http:\/\/127\.0\.0\.1:\d+", not the connector's issuer_url/);
    const failed = (await ssoLogins()).find((e) => e.connector === 'wrong' && e.success === false);
    expect(failed?.error).toContain('issuer');
  });

  it('GIVEN every login above WHEN the daemon\'s log and the audit log are read THEN the client secret is in neither', async () => {
    expect(c.daemon!.stdout + c.daemon!.stderr).not.toContain(SECRET);
    expect(JSON.stringify(await c.events())).not.toContain(SECRET);
  });

  it('GIVEN a connector WHEN tctl rm removes it THEN it is gone from tctl get and the login page, and both changes are audited', async () => {
    expect(await c.tctlOk('rm', 'oidc/wrong')).toBe('oidc connector "wrong" has been deleted\n');
    const get = await c.tctl('get', 'oidc/wrong');
    expect(get.code).not.toBe(0);
    expect(get.stderr).toContain('oidc connector "wrong" not found');
    const listed = await webApiRequest(c.webUrl(), ca, 'GET', '/webapi/connectors');
    expect(listed.json.items).toEqual([{ kind: 'oidc', name: 'corp', display: 'Corporate SSO' }]);
    const changes = await c.events(['oidc.created', 'oidc.deleted']);
    expect(changes.filter((e) => e.name === 'wrong').map((e) => [e.event, e.code])).toEqual([
      ['oidc.created', 'T8100I'],
      ['oidc.deleted', 'T8101I'],
    ]);
  });
});
