/**
 * Live sessions in the web UI (issue 19 item 2), in real Chromium: alice opens
 * a terminal in her browser; bob sees it on the active sessions page (which
 * refreshes itself) and joins it from his browser; carol joins with
 * `tsh join`. All three see what each types; bob leaving is audited; the
 * session's end lists all three.
 */
import { spawn } from 'node:child_process';
import { Browser, BrowserContext, Page } from 'playwright-core';
import type { ActiveSession } from '../../runtime/node/shared';
import { goto, launchChromium, newContext } from '../helpers/browser';
import { startCluster, TestAuth } from '../helpers/cluster';
import { cliPath, Daemon, waitFor } from '../helpers/proc';
import { LOGIN } from '../helpers/sshd';
import { TshUser } from '../helpers/users';

const SITE = 'example.com';

describe('live sessions in the browser', () => {
  let c: TestAuth;
  let browser: Browser;
  let base: string;
  const users: TshUser[] = [];
  const contexts: BrowserContext[] = [];
  let tsh: Daemon | undefined;

  beforeAll(async () => {
    c = await startCluster({ proxy: {} });
    base = c.webUrl();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await tsh?.stop('SIGKILL');
    for (const ctx of contexts) await ctx.close().catch(() => undefined);
    await browser?.close();
    await c?.cleanup();
    users.forEach((u) => u.cleanup());
  });

  /** A user signed up and logged in to the web UI in a browser profile of their own, on the node list. */
  const loggedIn = async (name: string): Promise<{ user: TshUser; context: BrowserContext; page: Page }> => {
    const user = await TshUser.signUp(c, name, [LOGIN]);
    users.push(user);
    const context = await newContext(browser);
    contexts.push(context);
    const page = await context.newPage();
    await goto(page, `${base}/web/login`);
    await page.fill('#username', name);
    await page.fill('#password', user.password);
    await page.fill('#otp', user.nextCode());
    await page.click('#login');
    await page.waitForURL(`${base}/web/cluster/${SITE}/nodes`);
    return { user, context, page };
  };
  /** The text on a terminal tab's screen. */
  const screen = async (tab: Page) => (await tab.locator('.xterm-rows > div').allTextContents()).map((l) => l.replace(/\u00a0/g, ' ').trimEnd()).join('\n');
  const typeLine = async (tab: Page, text: string) => {
    await tab.keyboard.type(text);
    await tab.keyboard.press('Enter');
  };
  const active = async (): Promise<ActiveSession[]> => {
    const client = await c.adminClient();
    try {
      return await client.get<ActiveSession[]>('/v1/namespaces/default/sessions');
    } finally {
      client.close();
    }
  };

  it('GIVEN alice in a browser terminal WHEN bob joins from the sessions page and carol with tsh join THEN all three see each other, and leaving is audited', async () => {
    // GIVEN alice's terminal, opened from her node list
    const alice = await loggedIn('alice');
    const link = alice.page.locator('#nodes tbody tr', { hasText: 'test-auth' }).locator('a.connect', { hasText: LOGIN });
    const [aliceTab] = await Promise.all([alice.context.waitForEvent('page'), link.click()]);
    await aliceTab.locator('#status', { hasText: 'Connected' }).waitFor();
    await typeLine(aliceTab, 'echo alice-$((1+1))');
    await waitFor('alice output', async () => (await screen(aliceTab)).includes('alice-2'));
    const [s] = await waitFor('the session listed', async () => ((await active()).length === 1 ? await active() : undefined));

    // WHEN bob opens the active sessions page THEN it lists alice's session with a Join link, and he joins from it
    const bob = await loggedIn('bob');
    await bob.page.click('#sessions-link');
    await bob.page.waitForURL(`${base}/web/cluster/${SITE}/sessions`);
    const row = bob.page.locator(`#sessions tbody tr[data-sid="${s.id}"]`);
    await row.waitFor();
    expect(await row.locator('td.users').textContent()).toBe('alice');
    const join = row.locator('a.connect', { hasText: 'Join' });
    expect(await join.getAttribute('href')).toBe(`/web/cluster/${SITE}/console/node/${s.server_id}/${LOGIN}?sid=${s.id}`);
    const [bobTab] = await Promise.all([bob.context.waitForEvent('page'), join.click()]);
    await bobTab.locator('#status', { hasText: 'Connected' }).waitFor();
    // AND the page refreshes itself: bob now shows among the users
    await waitFor('bob listed on his sessions page', async () => (await row.locator('td.users').textContent()) === 'alice, bob');

    // AND carol joins with tsh join
    const carol = await TshUser.signUp(c, 'carol', [LOGIN]);
    users.push(carol);
    await carol.login();
    const child = spawn(process.execPath, [cliPath('tsh'), 'join', s.id], { env: { ...process.env, HOME: carol.home, TELEPORT_HOME: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
    tsh = new Daemon(child);
    await waitFor('carol among the parties', async () => (await active())[0]?.parties.some((p) => p.user === 'carol'));

    // THEN what each types reaches all three
    await typeLine(bobTab, 'echo bob-$((2+3))');
    child.stdin.write('echo carol-$((3+4))\n');
    await typeLine(aliceTab, 'echo alice-again-$((4+5))');
    for (const out of ['bob-5', 'carol-7', 'alice-again-9']) {
      await waitFor(`${out} in alice's terminal`, async () => (await screen(aliceTab)).includes(out));
      await waitFor(`${out} in bob's terminal`, async () => (await screen(bobTab)).includes(out));
      await tsh.waitForOutput(new RegExp(out));
    }

    // WHEN bob closes his tab THEN his leaving is audited and the others go on
    await bobTab.close();
    await waitFor('session.leave of bob', async () => (await c.events(['session.leave'])).find((e) => e.user === 'bob' && e.sid === s.id));
    await typeLine(aliceTab, 'echo still-here; exit');
    await tsh.waitForOutput(/still-here/);
    expect(await tsh.exited).toBe(0);
    const end = await waitFor('session.end', async () => (await c.events(['session.end'])).find((e) => e.sid === s.id));
    expect([...end.participants].sort()).toEqual(['alice', 'bob', 'carol']);
    expect((await c.events(['session.join'])).filter((e) => e.sid === s.id).map((e) => e.user).sort()).toEqual(['bob', 'carol']);
  });
});
