/**
 * Accessibility of every web UI page (issue 19 acceptance): axe-core's WCAG
 * 2.0/2.1 A and AA rules and its best practices run in real Chromium on each
 * page as a user sees it (logged in, with a node, a live session and a
 * recording where the page needs them; errors and ended sessions shown),
 * served with its real CSP (see test/helpers/axe.ts). A violation of impact
 * moderate, serious or critical fails the page's test, naming the rule, its
 * impact and the elements' selectors; minor ones are printed. And what axe
 * does not check: each page has one level-one heading (axe takes the
 * terminal, which covers most of the window, for a modal dialog and skips
 * that rule), and the self-refreshing sessions list keeps the keyboard focus.
 *
 * A new page is one line in PAGES: its name and how to open it ready.
 */
import { Browser, BrowserContext, Page } from 'playwright-core';
import { AxeViolation, axeViolations, failing, formatViolations } from '../helpers/axe';
import { goto, launchChromium, newContext, openUserMenu } from '../helpers/browser';
import { startCluster, TestAuth } from '../helpers/cluster';
import { waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const SITE = 'example.com';

/** What the pages need, made once on first use: two browser profiles, a live terminal, a recording. */
class Fixture {
  private anonPage?: Page;
  private alicePage?: Page;
  private terminalTab?: Page;
  private recorded?: string;

  constructor(
    readonly c: TestAuth,
    private readonly browser: Browser,
    private readonly contexts: BrowserContext[],
    private readonly users: TshUser[],
  ) {}

  private get base(): string {
    return this.c.webUrl();
  }

  private async context(): Promise<BrowserContext> {
    const ctx = await newContext(this.browser);
    this.contexts.push(ctx);
    return ctx;
  }

  /** A tab that is logged in nowhere. */
  async anon(): Promise<Page> {
    this.anonPage ??= await (await this.context()).newPage();
    return this.anonPage;
  }

  /** alice's tab, logged in to the web UI (its sessionStorage holds her web session). */
  async alice(): Promise<Page> {
    if (this.alicePage) return this.alicePage;
    const user = await TshUser.signUp(this.c, 'alice', [LOGIN]);
    this.users.push(user);
    const page = await (await this.context()).newPage();
    await goto(page, `${this.base}/web/login`);
    await page.fill('#username', 'alice');
    await page.fill('#password', user.password);
    await page.fill('#otp', user.nextCode());
    await page.click('#login');
    await page.waitForURL(`${this.base}/web/cluster/${SITE}/nodes`);
    this.alicePage = page;
    return page;
  }

  /** Opens `path` in `page` and waits for `ready` to be visible. */
  async visit(page: Page, path: string, ready: string): Promise<Page> {
    await page.bringToFront();
    await goto(page, this.base + path);
    await page.locator(ready).first().waitFor();
    return page;
  }

  /** A sign-up page for a user that `tctl users add` just made. */
  async signupPath(name: string): Promise<string> {
    const out = await this.c.tctlOk('users', 'add', name, LOGIN);
    return new URL(/https:\/\/\S+\/web\/newuser\/[0-9a-f]{32}/.exec(out)![0]).pathname;
  }

  /** alice's terminal on the node, opened from her node list as a user does, with some output on it. */
  async terminal(): Promise<Page> {
    if (this.terminalTab) return this.terminalTab;
    const page = await this.visit(await this.alice(), `/web/cluster/${SITE}/nodes`, '#nodes a.connect');
    const [tab] = await Promise.all([page.context().waitForEvent('page'), page.locator('#nodes a.connect', { hasText: LOGIN }).first().click()]);
    await tab.locator('#status', { hasText: 'Connected' }).waitFor();
    await tab.keyboard.type('echo a11y-$((6*7))');
    await tab.keyboard.press('Enter');
    await tab.locator('.xterm-rows', { hasText: 'a11y-42' }).waitFor();
    this.terminalTab = tab;
    return tab;
  }

  /** The login page saying that the password was wrong. */
  async refusedLogin(): Promise<Page> {
    const page = await this.visit(await this.anon(), '/web/login', '#login-form');
    await page.fill('#username', 'nobody');
    await page.fill('#password', 'not the password');
    await page.fill('#otp', '123456');
    await page.click('#login');
    await page.locator('#error').waitFor();
    return page;
  }

  /** The player once it has played the recording to its end (at 8×). */
  async played(): Promise<Page> {
    const page = await this.visit(await this.alice(), `/web/cluster/${SITE}/session/${await this.recording()}`, '#status:has-text("Ready")');
    await page.selectOption('#speed', '8');
    await page.click('#play');
    await page.locator('#status', { hasText: 'Finished' }).waitFor();
    return page;
  }

  /** The ID of alice's terminal session once it has ended and its recording is uploaded. */
  async recording(): Promise<string> {
    if (this.recorded) return this.recorded;
    const tab = await this.terminal();
    const [s] = await waitFor('the session listed', async () => ((await this.c.activeSessions()).length === 1 ? await this.c.activeSessions() : undefined));
    await tab.bringToFront();
    await tab.keyboard.type('exit');
    await tab.keyboard.press('Enter');
    await tab.locator('#status', { hasText: 'Session ended' }).waitFor();
    await waitFor('session.upload', async () => (await this.c.events(['session.upload'])).find((e) => e.sid === s.id));
    this.recorded = s.id;
    return s.id;
  }
}

/** Every page of the web UI, opened in the state a user sees it in. */
const PAGES: { name: string; open: (f: Fixture) => Promise<Page> }[] = [
  { name: 'login', open: async (f) => f.visit(await f.anon(), '/web/login', '#login-form') },
  { name: 'login (refused)', open: (f) => f.refusedLogin() },
  { name: 'newuser', open: async (f) => f.visit(await f.anon(), await f.signupPath('bob'), '#otp-secret') },
  { name: 'nodes', open: async (f) => f.visit(await f.alice(), `/web/cluster/${SITE}/nodes`, '#nodes tbody tr') },
  { name: 'terminal', open: (f) => f.terminal() },
  { name: 'sessions', open: async (f) => (await f.terminal(), f.visit(await f.alice(), `/web/cluster/${SITE}/sessions`, '#sessions tbody tr a.connect')) },
  { name: 'player', open: async (f) => f.visit(await f.alice(), `/web/cluster/${SITE}/session/${await f.recording()}`, '#status:has-text("Ready")') },
  { name: 'player (played)', open: (f) => f.played() },
  { name: 'terminal (ended)', open: async (f) => (await f.recording(), f.terminal()) },
  { name: 'account', open: async (f) => f.visit(await f.alice(), '/web/account', '#devices tr') },
  {
    name: 'nodes (user menu open)',
    open: async (f) => {
      const page = await f.visit(await f.alice(), `/web/cluster/${SITE}/nodes`, '#nodes tbody tr');
      await openUserMenu(page);
      await page.locator('#roles', { hasText: /\w/ }).waitFor();
      return page;
    },
  },
  { name: 'audit', open: async (f) => f.visit(await f.alice(), '/web/audit', '#events tbody tr') },
  {
    name: 'audit (event expanded)',
    open: async (f) => {
      const page = await f.visit(await f.alice(), '/web/audit', '#events tbody tr');
      await page.locator('#events button.expand').first().click();
      await page.locator('#events tr.details pre').first().waitFor();
      return page;
    },
  },
];

describe('accessibility of the web UI (axe-core: WCAG 2.1 A/AA and best practices)', () => {
  let c: TestAuth;
  let browser: Browser;
  let fixture: Fixture;
  const contexts: BrowserContext[] = [];
  const users: TshUser[] = [];

  beforeAll(async () => {
    c = await startCluster({ proxy: {} });
    browser = await launchChromium();
    fixture = new Fixture(c, browser, contexts, users);
  });
  afterAll(async () => {
    for (const ctx of contexts) await ctx.close().catch(() => undefined);
    await browser?.close();
    await c?.cleanup();
    users.forEach((u) => u.cleanup());
  });

  it('GIVEN the sessions page with the keyboard focus on a Join link WHEN the list refreshes THEN unchanged rows are left alone, and after a change the focus is still on that link', async () => {
    // GIVEN alice's live session on her sessions page, its Join link focused from the keyboard
    await fixture.terminal();
    const page = await fixture.visit(await fixture.alice(), `/web/cluster/${SITE}/sessions`, '#sessions tbody tr a.connect');
    const row = page.locator('#sessions tbody tr');
    expect(await row.locator('td.users').textContent()).toBe('alice');
    await row.locator('a.connect').focus();
    // WHEN the list is fetched again unchanged THEN its rows are left as they are (a screen reader keeps its place):
    // the page asks again only after it has handled the last answer, so two more requests mean one answer handled
    await page.evaluate(`window.rowMutations = 0;
      new MutationObserver((m) => (window.rowMutations += m.length)).observe(document.querySelector('#sessions tbody'), { childList: true, subtree: true, characterData: true })`);
    const sessionsRequest = () => page.waitForRequest((r) => new URL(r.url()).pathname === `/webapi/sites/${SITE}/sessions`);
    await sessionsRequest();
    await sessionsRequest();
    expect(await page.evaluate<number>('window.rowMutations')).toBe(0);
    // WHEN someone joins (a second tab of alice's) and the page's refresh shows it
    const [joined] = await Promise.all([page.context().waitForEvent('page'), page.evaluate("window.open(document.querySelector('#sessions a.connect').href)")]);
    try {
      await joined.locator('#status', { hasText: 'Connected' }).waitFor();
      await waitFor('the refreshed list', async () => (await row.locator('td.users').textContent()) === 'alice, alice');
      // THEN the focus is still on the session's Join link
      expect(await page.evaluate<string | null>("document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.sid + ' ' + document.activeElement.className")).toBe(
        `${await row.getAttribute('data-sid')} connect`,
      );
    } finally {
      await joined.close();
    }
  });

  it.each(PAGES.map((p) => [p.name, p]))('GIVEN the %s page as a user sees it WHEN axe checks it THEN it has no violation of moderate impact or worse, and one h1', async (name, p) => {
    // GIVEN the page, ready
    const page = await p.open(fixture);
    // WHEN axe-core checks it against WCAG 2.1 A/AA
    const violations: AxeViolation[] = await axeViolations(page);
    const minor = violations.filter((v) => !failing(violations).includes(v));
    if (minor.length) console.log(`minor accessibility findings:\n${formatViolations(name, minor)}`);
    // THEN none is moderate or worse (the message names each rule, impact and element)
    expect(formatViolations(name, failing(violations))).toBe('');
    // AND it has one level-one heading with text (axe lets a page off when something covers most of the
    // window, as the terminal does, taking it for a modal dialog)
    expect((await page.locator('h1').allTextContents()).map((t) => t.trim() !== '')).toEqual([true]);
  });

  it('GIVEN a page with a known violation WHEN axe checks it THEN the check reports it (the check itself works under the CSP)', async () => {
    // GIVEN the login page with its user name field's label taken away (in this tab only)
    const page = await fixture.visit(await fixture.anon(), '/web/login', '#login-form');
    await page.evaluate("document.querySelector('label[for=username]').remove()");
    // WHEN checked THEN axe names the unlabelled field as a critical violation
    const found = failing(await axeViolations(page));
    expect(found).toEqual([expect.objectContaining({ id: 'label', impact: 'critical', targets: ['#username'] })]);
  });
});
