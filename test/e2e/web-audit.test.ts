/**
 * The audit log in the web UI (issue 19 item 4), in real Chromium, and who may read it.
 *
 * Cluster: auth + proxy + node "test-auth" in one process (file audit log). Alice and bob
 * have the default admin role (whose rules let them list and read events); eve's only role
 * allows her logins on every node but has no rule on `event`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { AuthClient } from '../../runtime/auth/client';
import { formatAuthorizedKey, generateKeyPair, publicKeyBlob } from '../../runtime/sshcert';
import { generateTlsKey, publicKeyPem } from '../../runtime/tlsca';
import { cspViolations, goto, launchChromium, newContext, recordCspViolations } from '../helpers/browser';
import { startCluster, TestAuth } from '../helpers/cluster';
import { tempDir, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';
import { webApiRequest, WebRequestOptions } from '../helpers/webapi';

const SITE = 'example.com';
const NO_AUDIT_ROLE = `kind: role
version: v3
metadata:
  name: no-audit
spec:
  allow:
    logins: [${LOGIN}]
    node_labels:
      '*': '*'
    rules:
    - resources: [session]
      verbs: [list, read]
  deny: {}
`;
/** A user name a person could type at the login page, which the audit log keeps as it was typed. */
const MARKUP_USER = '<img src=x onerror="window.__xss=1">';

describe('the audit log page', () => {
  let c: TestAuth;
  let browser: Browser;
  let base: string;
  let ca: string;
  let work: string;
  const users: TshUser[] = [];
  const contexts: BrowserContext[] = [];
  const clients: AuthClient[] = [];
  /** Alice's logged-in page, and when the test run began. */
  let alicePage: Page;
  let started: Date;

  const request = (method: string, p: string, opts: WebRequestOptions = {}) => webApiRequest(base, ca, method, p, opts);
  const searchPath = (q: string) => `/webapi/sites/${SITE}/events/search?${q}`;

  beforeAll(async () => {
    started = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000);
    work = tempDir('web-audit-');
    c = await startCluster({ proxy: {} });
    base = c.webUrl();
    ca = fs.readFileSync(path.join(c.dataDir, 'webproxy_cert.pem'), 'utf8');
    fs.writeFileSync(path.join(work, 'role.yaml'), NO_AUDIT_ROLE);
    await c.tctlOk('create', path.join(work, 'role.yaml'));
    browser = await launchChromium();
  });
  afterAll(async () => {
    clients.forEach((cl) => cl.close());
    for (const ctx of contexts) await ctx.close().catch(() => undefined);
    await browser?.close();
    await c?.cleanup();
    users.forEach((u) => u.cleanup());
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const signUp = async (name: string, roles?: string[]) => {
    const user = await TshUser.signUp(c, name, [LOGIN], roles ? { roles } : {});
    users.push(user);
    return user;
  };

  /** An auth API client with a certificate of `user`'s own, issued by the auth server as at `tsh login` (`tctl auth sign`). */
  const asUser = async (user: string) => {
    const tlsKey = generateTlsKey();
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const admin = await c.adminClient();
    try {
      const ssh = formatAuthorizedKey(publicKeyBlob(generateKeyPair('ed25519').publicKey));
      const res = await admin.post<{ tls_cert: string }>(`/v1/users/${user}/certs`, { public_key: b64(ssh), tls_public_key: b64(publicKeyPem(tlsKey)) });
      const client = new AuthClient({
        servers: [{ host: '127.0.0.1', port: c.port }],
        credentials: { key: tlsKey, cert: Buffer.from(res.tls_cert, 'base64').toString(), ca: (await c.adminIdentity()).tlsCACerts },
      });
      clients.push(client);
      return client;
    } finally {
      admin.close();
    }
  };

  /** The web session token of a page logged in to the web UI. */
  const pageToken = (page: Page) => page.evaluate<string>("sessionStorage.getItem('teleport.token')");

  /** `user` logged in to the web UI in a browser profile of their own, on the node list. */
  const loggedIn = async (user: TshUser): Promise<{ context: BrowserContext; page: Page }> => {
    const context = await newContext(browser);
    contexts.push(context);
    await recordCspViolations(context);
    const page = await context.newPage();
    await goto(page, `${base}/web/login`);
    await page.fill('#username', user.name);
    await page.fill('#password', user.password);
    await page.fill('#otp', user.nextCode());
    await page.click('#login');
    await page.waitForURL(`${base}/web/cluster/${SITE}/nodes`);
    return { context, page };
  };

  /** Sets a `datetime-local` input to `d` in local time (the browser runs in this process's time zone). */
  const setLocalTime = (page: Page, selector: string, d: Date) => {
    const p = (n: number) => String(n).padStart(2, '0');
    const value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    return page.$eval(selector, (el, v) => ((el as unknown as { value: string }).value = v), value);
  };

  /** Runs a search on the audit page and waits for its answer: the rows as [type, user, summary]. */
  const search = async (page: Page, o: { user?: string; type?: string; from?: Date; to?: Date }): Promise<string[][]> => {
    if (o.from && o.to) {
      await page.selectOption('#range', 'custom');
      await setLocalTime(page, '#from', o.from);
      await setLocalTime(page, '#to', o.to);
    } else {
      await page.selectOption('#range', '3600000');
    }
    await page.selectOption('#event-type', o.type ?? '');
    await page.fill('#user', o.user ?? '');
    await page.click('#search');
    await page.locator('#search:not([disabled])').waitFor();
    await page.locator('#events:not([hidden]), #empty:not([hidden])').first().waitFor();
    return page.$$eval('#events tbody tr.event', (trs) => trs.map((tr) => ['.type', '.user', '.summary'].map((s) => tr.querySelector(s)!.textContent!)));
  };

  it('GIVEN alice made a session in her browser and bob logged in WHEN she picks a user and a range on the audit page THEN that user\'s login and session start and end show, not others\', and a range without them shows none', async () => {
    // GIVEN alice logged in to the web UI, with a terminal session on the node she ended
    const alice = await signUp('alice');
    const { context, page } = await loggedIn(alice);
    alicePage = page;
    const link = page.locator('#nodes tbody tr', { hasText: 'test-auth' }).locator('a.connect', { hasText: LOGIN });
    const [tab] = await Promise.all([context.waitForEvent('page'), link.click()]);
    await tab.locator('#status', { hasText: 'Connected' }).waitFor();
    await tab.keyboard.type('exit');
    await tab.keyboard.press('Enter');
    await tab.locator('#status', { hasText: 'Session ended' }).waitFor();
    const end = await waitFor('session.end of alice', async () => (await c.events(['session.end'])).find((e) => e.participants?.includes('alice')));
    await tab.close();
    // AND bob logged in with tsh
    const bob = await signUp('bob');
    await bob.login();

    // WHEN alice opens the audit page from the header
    await page.click('#audit-link');
    await page.waitForURL(`${base}/web/audit`);
    await page.locator('#audit-link[aria-current="page"]').waitFor();
    // AND searches alice's events of a range around the test
    const range = { from: started, to: new Date(Date.now() + 60_000) };
    const aliceRows = await search(page, { user: 'alice', ...range });
    // THEN her login and her session's start and end are there, and only hers
    const types = aliceRows.map((r) => r[0]);
    expect(types).toEqual(expect.arrayContaining(['user.login', 'session.start', 'session.end']));
    expect(aliceRows.every((r) => r[1] === 'alice')).toBe(true);
    expect(aliceRows.find((r) => r[0] === 'session.start')![2]).toBe(`started a session as ${LOGIN} on test-auth`);
    expect(aliceRows.find((r) => r[0] === 'session.end')![2]).toContain(`session ${end.sid} ended on test-auth`);
    // AND a row expands to the event's JSON: the event as the auth server stored it
    const startRow = page.locator('#events tbody tr.event[data-event="session.start"]').first();
    const toggle = startRow.locator('button.expand');
    expect(await toggle.getAttribute('aria-expanded')).toBe('false');
    await toggle.click();
    expect(await toggle.getAttribute('aria-expanded')).toBe('true');
    const json = JSON.parse((await page.locator(`#${(await toggle.getAttribute('aria-controls'))!} pre`).textContent())!);
    const stored = (await c.events(['session.start'])).find((e) => e.sid === end.sid);
    expect(json).toEqual(stored);

    // WHEN she filters by bob THEN only bob's events show, none of hers
    const bobRows = await search(page, { user: 'bob', ...range });
    expect(bobRows.map((r) => r[0])).toContain('user.login');
    expect(bobRows.every((r) => r[1] === 'bob')).toBe(true);
    // AND by type: only that type
    const logins = await search(page, { type: 'user.login', ...range });
    expect(new Set(logins.map((r) => r[0]))).toEqual(new Set(['user.login']));
    expect(logins.map((r) => r[1])).toEqual(expect.arrayContaining(['alice', 'bob']));

    // WHEN the range is an hour before the test THEN no event shows
    const none = await search(page, { user: 'alice', from: new Date(started.getTime() - 2 * 3600_000), to: new Date(started.getTime() - 3600_000) });
    expect(none).toEqual([]);
    expect(await page.isVisible('#empty')).toBe(true);
    expect(await page.isVisible('#events')).toBe(false);
    expect(await cspViolations(page)).toEqual([]);
  });

  it('GIVEN a failed login whose user name is HTML WHEN the audit page shows it THEN it is text: no element is made and nothing runs', async () => {
    // GIVEN a login attempt at the web API with markup for a user name (audited as typed)
    const res = await request('POST', '/webapi/sessions', { body: { user: MARKUP_USER, pass: 'whatever-password' } });
    expect(res.status).toBeGreaterThanOrEqual(400);
    await waitFor('the failed login audited', async () => (await c.events(['user.login'])).find((e) => e.user === MARKUP_USER));
    const page = alicePage;
    // WHEN alice lists failed logins of that user and expands the row
    const rows = await search(page, { user: MARKUP_USER, type: 'user.login' });
    await page.locator('#events tbody tr.event button.expand').first().click();
    // THEN the user cell and the JSON hold the markup as text, and the page made no image and ran nothing
    expect(rows[0][1]).toBe(MARKUP_USER);
    expect(await page.locator('#events tbody tr.details pre').first().textContent()).toContain(JSON.stringify(MARKUP_USER).slice(1, -1));
    expect(await page.locator('#events img').count()).toBe(0);
    expect(await page.evaluate('typeof window.__xss')).toBe('undefined');
  });

  it('GIVEN more events than a page WHEN "Load more" is clicked THEN the next ones follow, each once, even when many share a second', async () => {
    // GIVEN 150 events of a user on a past day, 120 of them in one second (written into the auth server's day file)
    const day = '2020-01-02';
    const lines = Array.from({ length: 150 }, (_, i) =>
      JSON.stringify({ event: 'exec', uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, user: 'pager', command: `echo ${i}`, time: `${day}T10:00:${i < 120 ? '00' : String(i - 119).padStart(2, '0')}Z` }),
    );
    fs.writeFileSync(path.join(c.dataDir, 'log', `${day}.00:00:00.log`), lines.join('\n') + '\n', { mode: 0o600 });
    const page = alicePage;
    // WHEN alice searches that day THEN a first page shows, with "Load more"
    const first = await search(page, { user: 'pager', from: new Date(`${day}T00:00:00Z`), to: new Date(`${day}T23:59:59Z`) });
    expect(first).toHaveLength(100);
    expect(await page.isVisible('#more')).toBe(true);
    // AND WHEN she loads more THEN the other 50 follow, and no more is offered
    await page.click('#more');
    await page.locator('#more[hidden]').waitFor({ state: 'attached' });
    const commands = await page.$$eval('#events tbody tr.event td.summary', (tds) => tds.map((td) => td.textContent));
    expect(commands).toEqual(Array.from({ length: 150 }, (_, i) => `ran "echo ${i}"`));
    expect(await page.textContent('#count')).toBe('150 events');
  });

  it('GIVEN eve, whose roles have no rule on event WHEN she opens the audit page, or searches through the web API or the auth API THEN 403; alice, with the rule, gets her events both ways', async () => {
    const eve = await signUp('eve', ['no-audit']);
    const { page } = await loggedIn(eve);
    // WHEN eve opens the audit page THEN it says she may not read the audit log (and her session goes on)
    await page.click('#audit-link');
    await page.locator('#error', { hasText: 'do not allow reading the audit log' }).waitFor();
    expect(await page.isVisible('#events')).toBe(false);
    expect(await page.isVisible('#relogin')).toBe(false);
    // AND WHEN she asks the web API THEN 403 saying why
    const eveWeb = await request('GET', searchPath('user=eve'), { token: await pageToken(page) });
    expect(eveWeb.status).toBe(403);
    expect(eveWeb.json.error.message).toMatch(/roles of user "eve" do not allow reading the audit log/);
    // AND the auth API with her own certificate THEN 403 too
    await expect((await asUser('eve')).get('/v1/events')).rejects.toMatchObject({ reason: 'access_denied', message: expect.stringMatching(/do not allow reading the audit log/) });
    // AND alice gets her events both ways
    const aliceWeb = await request('GET', searchPath('user=alice&event=user.login'), { token: await pageToken(alicePage) });
    expect(aliceWeb.status).toBe(200);
    expect(aliceWeb.json.events.length).toBeGreaterThan(0);
    expect(aliceWeb.json.events.every((e: { user: string; event: string }) => e.user === 'alice' && e.event === 'user.login')).toBe(true);
    const direct = await (await asUser('alice')).get<{ user: string }[]>('/v1/events?user=eve');
    expect(direct.map((e) => e.user)).toContain('eve');
    expect(direct.every((e) => e.user === 'eve')).toBe(true);
    // AND without a web session the web API answers 401
    expect((await request('GET', searchPath(''))).status).toBe(401);
  });

  it('GIVEN bad search input THEN 400 saying what is wrong, and the next search works', async () => {
    const token = await pageToken(alicePage);
    const now = new Date().toISOString();
    const cases: [string, RegExp][] = [
      ['from=yesterday', /from must be an RFC 3339 time/],
      ['to=2026-13-45T99:00:00Z', /to must be an RFC 3339 time/],
      [`from=${now}&to=2020-01-01T00:00:00Z`, /from \(.*\) is after to \(2020-01-01T00:00:00.000Z\)/],
      ['limit=0', /limit must be between 1 and 10000/],
      ['limit=10001', /limit must be between 1 and 10000/],
      ['limit=ten', /limit must be a whole number/],
      ['user=', /user cannot be empty/],
      ['user=a&user=b', /user is given more than once/],
      ['color=red', /unknown parameter color/],
    ];
    for (const [q, message] of cases) {
      const res = await request('GET', searchPath(q), { token });
      expect([q, res.status, res.json.error.message]).toEqual([q, 400, expect.stringMatching(message)]);
    }
    expect((await request('GET', searchPath('limit=1'), { token })).json.events).toHaveLength(1);
  });
});
