/**
 * Live sessions in the web UI (issue 19 item 2), in real Chromium: alice opens
 * a terminal in her browser; bob sees it on the active sessions page (which
 * refreshes itself) and joins it from his browser; carol joins with
 * `tsh join`. All three see what each types; bob leaving is audited; the
 * session's end lists all three.
 */
import { spawn } from 'node:child_process';
import { Browser, BrowserContext, Page } from 'playwright-core';
import { goto, launchChromium, newContext, terminalScreen } from '../helpers/browser';
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
  /** The session the first test records, and alice's logged-in page (its tab holds her web session). */
  let sid: string;
  let alicePage: Page;

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
  const screen = terminalScreen;
  const typeLine = async (tab: Page, text: string) => {
    await tab.keyboard.type(text);
    await tab.keyboard.press('Enter');
  };
  const active = () => c.activeSessions();

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

    // THEN what each types reaches all three (one at a time: they type into one shell)
    const typed: [string, () => Promise<unknown>][] = [
      ['bob-5', () => typeLine(bobTab, 'echo bob-$((2+3))')],
      ['carol-7', async () => child.stdin.write('echo carol-$((3+4))\n')],
      ['alice-again-9', () => typeLine(aliceTab, 'echo alice-again-$((4+5))')],
    ];
    for (const [out, type] of typed) {
      await type();
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
    sid = s.id;
    alicePage = alice.page;
  });

  it('GIVEN the recorded session WHEN alice opens it in the player THEN it plays back the same text in order (at 8×), and seeks', async () => {
    // GIVEN the recording uploaded (the node uploads it when the session ends)
    await waitFor('session.upload', async () => (await c.events(['session.upload'])).find((e) => e.sid === sid));
    const page = alicePage;
    // (a tab in the background gets no animation frames, in which xterm.js draws)
    await page.bringToFront();
    await goto(page, `${base}/web/cluster/${SITE}/session/${sid}`);
    await page.locator('#status', { hasText: 'Ready' }).waitFor();
    expect(await page.textContent('#target')).toBe(`${LOGIN}@test-auth`);
    // WHEN played at 8× THEN what the three typed comes back, in the order it happened
    await page.selectOption('#speed', '8');
    await page.click('#play');
    await page.locator('#status', { hasText: 'Finished' }).waitFor();
    const text = await screen(page);
    const order = ['alice-2', 'bob-5', 'carol-7', 'alice-again-9', 'still-here'].map((out) => text.indexOf(out));
    expect(order.every((at) => at >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    // WHEN sought back to the start THEN the screen is as it was then; to the end, as it ended
    await page.locator('#seek').fill('0');
    await waitFor('the screen at the start', async () => !(await screen(page)).includes('alice-2'));
    const end = await page.getAttribute('#seek', 'max');
    await page.locator('#seek').fill(end!);
    await waitFor('the screen at the end', async () => (await screen(page)).includes('still-here'));
    expect(await page.textContent('#time')).toMatch(/^(\d+:\d\d) \/ \1$/);
  });

  it('GIVEN a session ID with no recording she may see WHEN the player opens it THEN it says so', async () => {
    const page = alicePage;
    await goto(page, `${base}/web/cluster/${SITE}/session/00000000-0000-4000-8000-00000000dead`);
    await page.locator('#status', { hasText: 'Not available' }).waitFor();
    expect(await page.textContent('#error')).toBe('No recording of session 00000000-0000-4000-8000-00000000dead that you may see.');
  });
});
